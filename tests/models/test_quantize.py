"""int8 quantization: the average pools stay in float, and sessions keep them so.

ONNX Runtime fuses ``DequantizeLinear -> AveragePool -> QuantizeLinear`` back
into its slow ``QLinearAveragePool`` kernel unless the session sets
``session.disable_quant_qdq``; the int8 sidecar records that entry and
:mod:`emodist.models.session` applies it.  These tests check the graph, which
kernels a session really runs (ONNX Runtime's own profile), and that the
float pools give the same features as the fused kernel.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from emodist.models.quantize import FLOAT_OPS, SESSION_CONFIG, quantize_int8
from emodist.models.session import _session_options, clear_sessions, embed, read_sidecar


def _images(n: int, seed: int, size: int = 299) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size).astype(np.uint8)
    imgs = [np.broadcast_to(ramp[:, None], (size, size))]
    # smooth images (a spectrogram is not white noise): blurred noise
    for _ in range(n - 1):
        x = rng.random((size // 8 + 1, size // 8 + 1))
        x = np.kron(x, np.ones((8, 8)))[:size, :size]
        imgs.append((255 * x).astype(np.uint8))
    return np.ascontiguousarray(np.stack(imgs))


def _kernels_run(model: str, config: dict | None, tmp_path: Path) -> collections.Counter:
    """Operator types ONNX Runtime ran for one batch (its profile), with ``config``."""
    import onnxruntime as ort

    opts = _session_options(1, config)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "profile")
    sess = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 299, 299), np.float32)
    sess.run(None, {sess.get_inputs()[0].name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    return collections.Counter(e["args"]["op_name"] for e in events
                               if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"))


def _check_pools(fp32: str, tmp_path: Path, n_pools: int) -> None:
    import onnx

    cal = _images(2, seed=1)
    new = quantize_int8(fp32, tmp_path / "float_pools.onnx", cal)
    fused = quantize_int8(fp32, tmp_path / "fused_pools.onnx", cal, float_ops=())
    meta = read_sidecar(new)
    assert meta["float_ops"] == list(FLOAT_OPS) and meta["session_config"] == SESSION_CONFIG
    assert "session_config" not in read_sidecar(fused)

    ops = collections.Counter(n.op_type for n in onnx.load(new).graph.node)
    assert ops["AveragePool"] == n_pools and ops["QLinearAveragePool"] == 0
    assert ops["QLinearConv"] == 92  # every other convolution is still int8
    assert collections.Counter(
        n.op_type for n in onnx.load(fused).graph.node)["QLinearAveragePool"] == n_pools

    # what the session really runs: float pools with the sidecar's entry, the fused
    # kernel without it
    ran = _kernels_run(new, meta["session_config"], tmp_path)
    assert ran["AveragePool"] == n_pools and ran["QLinearAveragePool"] == 0
    assert _kernels_run(new, None, tmp_path)["QLinearAveragePool"] == n_pools

    # and the values: the float pool between the model's own conversions rounds
    # exactly like the fused kernel
    imgs = _images(6, seed=2)
    clear_sessions()
    a, b = embed(imgs, new, batch_size=3), embed(imgs, fused, batch_size=3)
    assert np.isfinite(a).all() and a.std() > 0
    np.testing.assert_array_equal(a, b)


def test_int8_tiny_model_keeps_its_average_pools_in_float(tiny_model, tmp_path):
    _check_pools(tiny_model, tmp_path, n_pools=8)


@pytest.mark.model
def test_int8_real_model_keeps_its_average_pools_in_float(real_model, tmp_path):
    _check_pools(real_model, tmp_path, n_pools=8)



def _run(model, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    data = model.SerializeToString() if not isinstance(model, (str, Path)) else str(model)
    sess = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_pools_after_convs_moves_the_eight_pools_and_keeps_the_features(tiny_model):
    import onnx

    from emodist.models.build import to_network_input
    from emodist.models.quantize import pools_after_convs

    model = onnx.load(tiny_model)
    assert pools_after_convs(model) == 8
    onnx.checker.check_model(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    readers = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    for pool in (n for n in model.graph.node if n.op_type == "AveragePool"):
        conv = producer[pool.input[0]]
        assert conv.op_type == "Conv"
        assert [r.op_type for r in readers[pool.output[0]]] == ["Relu"]
    assert pools_after_convs(model) == 0  # nothing left to move

    x = to_network_input(_images(4, seed=3))
    before, after = _run(onnx.load(tiny_model), x), _run(model, x)
    assert np.abs(before).max() > 0
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5 * np.abs(before).max())


def _pool_conv_graph(*, pad_counted: int, kernel: int, two_readers: bool = False):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[3, 3], strides=[1, 1],
                              pads=[1, 1, 1, 1], count_include_pad=pad_counted),
             helper.make_node("Conv", ["p", "w", "b"], ["y"], pads=[kernel // 2] * 4)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if two_readers:
        nodes.append(helper.make_node("Relu", ["p"], ["r"]))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 7, 5])], outputs,
        [numpy_helper.from_array(rng.standard_normal((4, 6, kernel, kernel)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 3, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_pools_after_convs_is_exact_at_the_borders_and_leaves_inexact_pairs_alone():
    from emodist.models.quantize import pools_after_convs

    x = np.random.default_rng(1).standard_normal((1, 6, 7, 5)).astype(np.float32)
    # the padding is not counted: a large bias must come out unchanged at the borders too
    model = _pool_conv_graph(pad_counted=0, kernel=1)
    before = _run(model, x)
    assert pools_after_convs(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv", "AveragePool"]
    np.testing.assert_allclose(_run(model, x), before, rtol=0, atol=1e-5)
    # counted padding, a 3 x 3 kernel, a second reader of the pool: each would change values
    for kwargs in ({"pad_counted": 1, "kernel": 1}, {"pad_counted": 0, "kernel": 3},
                   {"pad_counted": 0, "kernel": 1, "two_readers": True}):
        model = _pool_conv_graph(**kwargs)
        assert pools_after_convs(model) == 0, kwargs
        assert [n.op_type for n in model.graph.node][:2] == ["AveragePool", "Conv"]


def test_int8_sidecar_records_the_moved_pools(tiny_model, tmp_path):
    cal = _images(2, seed=1)
    moved = read_sidecar(quantize_int8(tiny_model, tmp_path / "moved.onnx", cal))
    kept = read_sidecar(quantize_int8(tiny_model, tmp_path / "kept.onnx", cal, move_pools=False))
    assert moved["graph_rewrites"] == ["8 average pools after their 1 x 1 convolutions"]
    assert "graph_rewrites" not in kept and moved["sha256"] != kept["sha256"]
