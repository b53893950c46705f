"""The exact graph rewrites: the same bits as the model file, less work.

Each rewritten graph is run beside the original in ONNX Runtime on the same
inputs and the outputs are compared with ``np.array_equal`` (bit for bit),
on small graphs made here (scales of both signs and zero, both ``keepdims``,
axes as attribute and as input, channel counts that do and do not fill a
block), on a full-size random-weight MusiCNN whose batch norms have negative
scales, and on the real taggers with real audio.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from emodist.models import musicnn as m
from emodist.models import musicnn_graph as mg
from emodist.models import rewrite
from emodist.models.session import clear_sessions, get_session


def _run(model: onnx.ModelProto | bytes, feeds: dict) -> list[np.ndarray]:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _chain(scale: np.ndarray, *, axes=(3,), keepdims: int = 1, opset: int = 17,
           shift: np.ndarray | None = None, extra_output: str | None = None,
           scale_input: bool = False) -> onnx.ModelProto:
    """x (2, 1, 12, 10) -> Conv 5 x 3 (C channels) -> Relu -> Mul -> Add -> ReduceMax."""
    rng = np.random.default_rng(0)
    c = scale.shape[1]
    inits = [numpy_helper.from_array(rng.standard_normal((c, 1, 5, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "b"),
             numpy_helper.from_array(
                 (shift if shift is not None else rng.standard_normal((1, c, 1, 1))).astype(np.float32),
                 "shift")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1, 12, 10])]
    if scale_input:
        inputs.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, list(scale.shape)))
    else:
        inits.append(numpy_helper.from_array(scale.astype(np.float32), "scale"))
    reduce_inputs, attrs = ["z"], {"keepdims": keepdims}
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
        reduce_inputs.append("axes")
    else:
        attrs["axes"] = list(axes)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[2, 0, 2, 0], name="conv"),
             helper.make_node("Relu", ["y"], ["r"]),
             helper.make_node("Mul", ["r", "scale"], ["s"]),
             helper.make_node("Add", ["s", "shift"], ["z"]),
             helper.make_node("ReduceMax", reduce_inputs, ["out"], **attrs)]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info(extra_output, TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "chain", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _x() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((2, 1, 12, 10)).astype(np.float32)


MIXED = np.array([1.5, -0.7, 0.0, -2.0, 0.3, -0.0], np.float32).reshape(1, 6, 1, 1)


@pytest.mark.parametrize("axes, keepdims, opset", [((3,), 1, 17), ((3,), 0, 17), ((2, 3), 0, 17),
                                                   ((-1,), 1, 17), ((3,), 1, 18), ((2, 3), 1, 18)])
def test_chain_rewritten_bit_for_bit(axes, keepdims, opset):
    model = _chain(MIXED, axes=axes, keepdims=keepdims, opset=opset)
    out, n = rewrite.max_before_affine(model)
    assert n == 1
    ops = [node.op_type for node in out.graph.node]
    # the maximum now comes straight after the convolution, the sign restored after it
    assert ops == ["Conv", "ReduceMax", "Mul", "Relu", "Mul", "Add"]
    want, = _run(model, {"x": _x()})
    got, = _run(out, {"x": _x()})
    assert got.shape == want.shape and np.array_equal(got, want)
    # the replaced constants are gone, the new ones are per channel
    names = {t.name for t in out.graph.initializer}
    assert "w" not in names and "scale" not in names
    assert {p.key: p.value for p in out.metadata_props}[rewrite.METADATA_KEY] == \
        "max_before_affine x1"


def test_positive_scales_need_no_sign_and_keep_the_weights():
    model = _chain(np.abs(MIXED) + 0.1)
    out, n = rewrite.max_before_affine(model)
    assert n == 1
    assert [node.op_type for node in out.graph.node] == ["Conv", "ReduceMax", "Relu", "Mul", "Add"]
    assert out.graph.node[0].input[1] == "w"
    assert np.array_equal(_run(out, {"x": _x()})[0], _run(model, {"x": _x()})[0])


def test_scalar_negative_scale():
    model = _chain(np.full((1, 1, 1, 1), -0.5, np.float32), shift=np.full((1, 1, 1, 1), 0.25))
    out, n = rewrite.max_before_affine(model)
    assert n == 1
    assert np.array_equal(_run(out, {"x": _x()})[0], _run(model, {"x": _x()})[0])


@pytest.mark.parametrize("case", ["intermediate is an output", "scale is an input",
                                  "scale varies over frequency", "reduces channels"])
def test_chain_left_alone(case):
    scale = MIXED
    kwargs = {}
    if case == "intermediate is an output":
        kwargs["extra_output"] = "r"
    elif case == "scale is an input":
        kwargs["scale_input"] = True
    elif case == "scale varies over frequency":
        scale = np.linspace(-1, 1, 6 * 10, dtype=np.float32).reshape(1, 6, 1, 10)
    else:
        kwargs["axes"] = (1,)
    model = _chain(scale, **kwargs)
    out, n = rewrite.max_before_affine(model)
    assert n == 0 and out is model
    data = model.SerializeToString()
    assert rewrite.for_session(data) is data


def test_for_session_leaves_graphs_without_reducemax_unparsed(tiny_model):
    data = Path(tiny_model).read_bytes()
    assert b"ReduceMax" not in data
    assert rewrite.for_session(data) is data


@pytest.fixture(scope="module")
def flipped_musicnn() -> onnx.ModelProto:
    """Full-size random MusiCNN whose batch norms have negative scales in every layer."""
    weights = mg.random_weights(seed=3)
    for name, value in weights.items():
        if name.endswith("/gamma"):
            value[::3] *= -1
    return mg.build_graph(weights, name="musicnn-random-flipped")


def test_musicnn_front_end_rewritten_bit_for_bit(flipped_musicnn):
    out, n = rewrite.max_before_affine(flipped_musicnn)
    assert n == 5  # two timbral and three temporal convolutions
    out, n = rewrite.pool_blocked(out)
    assert n == 5
    ops = [node.op_type for node in out.graph.node]
    assert ops.count("MaxPool") == 5 and ops.count("Slice") == 5  # 204 and 51 channels padded
    patches = np.random.default_rng(7).uniform(0.0, 4.0, (3, m.N_FRAMES, m.N_MELS)).astype(np.float32)
    want = _run(flipped_musicnn, {m.INPUT_NAME: patches})
    got = _run(out, {m.INPUT_NAME: patches})
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)


def test_sessions_run_the_rewritten_graph(tmp_path):
    path = m.build_random_model(tmp_path / "random.onnx", seed=0)
    clear_sessions()
    try:
        meta = get_session(path).get_modelmeta().custom_metadata_map
    finally:
        clear_sessions()
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert meta[rewrite.METADATA_KEY] == ("max_before_affine x5, pool_blocked x5" if x86
                                          else "max_before_affine x5")
    # the file on disk (and so its hash) is the builder's, not rewritten
    assert rewrite.METADATA_KEY not in {p.key for p in onnx.load(path).metadata_props}


@pytest.mark.model
@pytest.mark.emotify
def test_real_musicnn_rewritten_bit_for_bit(real_musicnn, emotify_root):
    from emodist.data.audio import load_track

    y = load_track(str(emotify_root / "emotifymusic" / "rock" / "3.mp3"), m.SR, duration_s=15.0)
    patches = m.input_patches(y)
    for variant, path in real_musicnn.items():
        model = onnx.load(path)
        out, n = rewrite.max_before_affine(model)
        assert n == 5, variant
        out, n = rewrite.pool_blocked(out)
        assert n == 5, variant
        for a, b in zip(_run(out, {m.INPUT_NAME: patches}), _run(model, {m.INPUT_NAME: patches}),
                        strict=True):
            assert np.array_equal(a, b), variant


@pytest.mark.parametrize("channels, axes, pool", [(6, (3,), "MaxPool"), (16, (3,), "MaxPool"),
                                                   (6, (2,), "MaxPool"), (6, (2, 3), "GlobalMaxPool")])
def test_pool_blocked_bit_for_bit(channels, axes, pool):
    scale = np.linspace(-1.0, 1.0, channels, dtype=np.float32).reshape(1, channels, 1, 1)
    model = _chain(scale, axes=axes)
    first, _ = rewrite.max_before_affine(model)
    out, n = rewrite.pool_blocked(first, block=16)
    assert n == 1
    ops = [node.op_type for node in out.graph.node]
    # padding channels (and the Slice that drops them) only when 16 is not filled
    assert ops[:3] == (["Conv", pool, "Slice"] if channels % 16 else ["Conv", pool, "Mul"])
    weight = next(t for t in out.graph.initializer if t.name == out.graph.node[0].input[1])
    assert weight.dims[0] == 16
    want, = _run(model, {"x": _x()})
    got, = _run(out, {"x": _x()})
    assert got.shape == want.shape and np.array_equal(got, want)
    assert {p.key: p.value for p in out.metadata_props}[rewrite.METADATA_KEY] == \
        "max_before_affine x1, pool_blocked x1"


def test_pool_blocked_left_alone_where_it_would_not_pay():
    # keepdims=0 has no pooling form; a GPU or another CPU has no blocked MaxPool
    first, _ = rewrite.max_before_affine(_chain(MIXED, keepdims=0))
    out, n = rewrite.pool_blocked(first)
    assert n == 0 and out is first
    data = _chain(MIXED).SerializeToString()
    on_gpu = onnx.load_from_string(rewrite.for_session(data, device="cuda:0"))
    assert {p.key: p.value for p in on_gpu.metadata_props}[rewrite.METADATA_KEY] == \
        "max_before_affine x1"
    assert "MaxPool" not in [node.op_type for node in on_gpu.graph.node]
