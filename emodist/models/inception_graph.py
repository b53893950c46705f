"""Inception-v3 (the TensorFlow 2015 ImageNet network used for FID) as an ONNX graph.

One builder, :func:`build_graph`, turns a mapping of convolution layers
(:class:`ConvLayer`: weight, batch-norm shift/mean/variance, stride, padding)
into an ONNX model.  The real model gets its layers from the TorchScript
archive (:mod:`emodist.models.unpickle`), the tiny test model from
:func:`random_layers`; both go through the same builder, so the tiny model
exercises every node type of the real one.

The topology follows the archive's ``code/__torch__/inceptionv3.py``:
every convolution has no bias and is followed by a batch norm without scale
(``eps = 0.001``) and a ReLU; blocks ``mixed`` .. ``mixed_10`` are Inception
A (x3), B, C (x4), D, E (x2); branch average pools use
``count_include_pad=False``; the last E block pools its extra branch with a
3x3 max pool.  Batch norm is folded into the convolution:
``W' = W * s``, ``b' = beta - mean * s`` with ``s = 1 / sqrt(var + eps)``.

The final 8x8 average pool of the archive is written as ``GlobalAveragePool``
(identical for the 299 x 299 input, whose last feature map is 8 x 8), so the
graph also accepts other image sizes of at least 75 x 75.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from emodist.errors import ModelError
from emodist.models.onnxutil import finish_model

__all__ = [
    "BN_EPS", "INPUT_NAME", "MIN_IMAGE_SIZE", "OPSET", "OUTPUT_NAME", "ConvLayer", "ConvSpec",
    "build_graph", "check_layers", "conv_layout", "count_macs", "output_dim", "random_layers",
]

#: Batch-norm epsilon of the archive's ``Conv2dLayer``.
BN_EPS = 1e-3
#: ONNX opset of the written graphs.
OPSET = 17
#: Smallest input side the topology accepts (three stride-2 stages + valid convs).
MIN_IMAGE_SIZE = 75
INPUT_NAME = "images"
OUTPUT_NAME = "features"


@dataclass(frozen=True)
class ConvLayer:
    """One ``conv (no bias) -> batch norm (no scale) -> relu`` layer.

    Attributes
    ----------
    weight : np.ndarray
        ``(out, in, kh, kw)`` convolution weight.
    beta, mean, var : np.ndarray
        ``(out,)`` batch-norm shift, running mean and running variance.
    stride : int
    padding : tuple of int
        ``(pad_h, pad_w)`` zero padding on each side.
    """

    weight: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    stride: int
    padding: tuple[int, int]

    def folded(self, eps: float = BN_EPS) -> tuple[np.ndarray, np.ndarray]:
        """Weight and bias of the convolution with the batch norm folded in."""
        scale = 1.0 / np.sqrt(self.var.astype(np.float64) + eps)
        w = self.weight.astype(np.float64) * scale[:, None, None, None]
        b = self.beta.astype(np.float64) - self.mean.astype(np.float64) * scale
        return w.astype(np.float32), b.astype(np.float32)


@dataclass(frozen=True)
class ConvSpec:
    """Shape of one convolution layer of the topology (see :func:`conv_layout`)."""

    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: int
    padding: tuple[int, int]


def _scaled(c: int, divisor: int) -> int:
    return max(2, round(c / divisor))


def conv_layout(width_divisor: int = 1) -> list[ConvSpec]:
    """Every convolution of Inception-v3, in graph order, named as in the archive.

    Parameters
    ----------
    width_divisor : int
        1 for the real network; larger values divide every layer's channel
        count (the tiny test model).

    Returns
    -------
    list of ConvSpec
        Names are relative to the archive's ``net.layers`` module, e.g.
        ``"mixed_4.tower_1.conv_3"``.
    """
    d = int(width_divisor)
    if d < 1:
        raise ModelError(f"width divisor must be >= 1, got {width_divisor}")
    specs: list[ConvSpec] = []

    def conv(name, cin, cout, k=(1, 1), stride=1, pad=(0, 0)):
        specs.append(ConvSpec(name, cin, _scaled(cout, d), tuple(k), stride, tuple(pad)))
        return specs[-1].out_channels

    c = conv("conv", 3, 32, (3, 3), 2)
    c = conv("conv_1", c, 32, (3, 3))
    c = conv("conv_2", c, 64, (3, 3), pad=(1, 1))
    c = conv("conv_3", c, 80)
    c = conv("conv_4", c, 192, (3, 3))
    for name, pool_features in (("mixed", 32), ("mixed_1", 64), ("mixed_2", 64)):
        a = conv(f"{name}.conv", c, 64)
        b = conv(f"{name}.tower.conv", c, 48)
        b = conv(f"{name}.tower.conv_1", b, 64, (5, 5), pad=(2, 2))
        t = conv(f"{name}.tower_1.conv", c, 64)
        t = conv(f"{name}.tower_1.conv_1", t, 96, (3, 3), pad=(1, 1))
        t = conv(f"{name}.tower_1.conv_2", t, 96, (3, 3), pad=(1, 1))
        p = conv(f"{name}.tower_2.conv", c, pool_features)
        c = a + b + t + p
    a = conv("mixed_3.conv", c, 384, (3, 3), 2)
    t = conv("mixed_3.tower.conv", c, 64)
    t = conv("mixed_3.tower.conv_1", t, 96, (3, 3), pad=(1, 1))
    t = conv("mixed_3.tower.conv_2", t, 96, (3, 3), 2)
    c = a + t + c
    for name, c7 in (("mixed_4", 128), ("mixed_5", 160), ("mixed_6", 160), ("mixed_7", 192)):
        a = conv(f"{name}.conv", c, 192)
        b = conv(f"{name}.tower.conv", c, c7)
        b = conv(f"{name}.tower.conv_1", b, c7, (1, 7), pad=(0, 3))
        b = conv(f"{name}.tower.conv_2", b, 192, (7, 1), pad=(3, 0))
        t = conv(f"{name}.tower_1.conv", c, c7)
        t = conv(f"{name}.tower_1.conv_1", t, c7, (7, 1), pad=(3, 0))
        t = conv(f"{name}.tower_1.conv_2", t, c7, (1, 7), pad=(0, 3))
        t = conv(f"{name}.tower_1.conv_3", t, c7, (7, 1), pad=(3, 0))
        t = conv(f"{name}.tower_1.conv_4", t, 192, (1, 7), pad=(0, 3))
        p = conv(f"{name}.tower_2.conv", c, 192)
        c = a + b + t + p
    a = conv("mixed_8.tower.conv", c, 192)
    a = conv("mixed_8.tower.conv_1", a, 320, (3, 3), 2)
    t = conv("mixed_8.tower_1.conv", c, 192)
    t = conv("mixed_8.tower_1.conv_1", t, 192, (1, 7), pad=(0, 3))
    t = conv("mixed_8.tower_1.conv_2", t, 192, (7, 1), pad=(3, 0))
    t = conv("mixed_8.tower_1.conv_3", t, 192, (3, 3), 2)
    c = a + t + c
    for name in ("mixed_9", "mixed_10"):
        a = conv(f"{name}.conv", c, 320)
        m = conv(f"{name}.tower_conv", c, 384)
        m1 = conv(f"{name}.tower_mixed_conv", m, 384, (1, 3), pad=(0, 1))
        m2 = conv(f"{name}.tower_mixed_conv_1", m, 384, (3, 1), pad=(1, 0))
        t = conv(f"{name}.tower_1_conv", c, 448)
        t = conv(f"{name}.tower_1_conv_1", t, 384, (3, 3), pad=(1, 1))
        t1 = conv(f"{name}.tower_1_mixed_conv", t, 384, (1, 3), pad=(0, 1))
        t2 = conv(f"{name}.tower_1_mixed_conv_1", t, 384, (3, 1), pad=(1, 0))
        p = conv(f"{name}.tower_2_conv", c, 192)
        c = a + m1 + m2 + t1 + t2 + p
    return specs


def output_dim(width_divisor: int = 1) -> int:
    """Length of the feature vector (2048 for the real network)."""
    specs = {s.name: s.out_channels for s in conv_layout(width_divisor)}
    parts = ("conv", "tower_mixed_conv", "tower_mixed_conv_1", "tower_1_mixed_conv",
             "tower_1_mixed_conv_1", "tower_2_conv")
    return sum(specs[f"mixed_10.{p}"] for p in parts)


def random_layers(width_divisor: int = 16, seed: int = 0) -> dict[str, ConvLayer]:
    """Random layers of the :func:`conv_layout` shapes (the tiny test network).

    Weights are He-scaled so activations neither vanish nor explode through
    the depth; batch-norm statistics are random but positive in variance.
    """
    rng = np.random.default_rng(seed)
    layers = {}
    for s in conv_layout(width_divisor):
        fan_in = s.in_channels * s.kernel[0] * s.kernel[1]
        w = rng.standard_normal((s.out_channels, s.in_channels, *s.kernel)) * np.sqrt(2.0 / fan_in)
        layers[s.name] = ConvLayer(
            weight=w.astype(np.float32),
            beta=(0.1 * rng.standard_normal(s.out_channels)).astype(np.float32),
            mean=(0.05 * rng.standard_normal(s.out_channels)).astype(np.float32),
            var=rng.uniform(0.5, 1.5, s.out_channels).astype(np.float32),
            stride=s.stride,
            padding=s.padding,
        )
    return layers


def check_layers(layers: Mapping[str, ConvLayer], width_divisor: int = 1) -> None:
    """Raise :class:`ModelError` unless ``layers`` has exactly the layout's shapes."""
    specs = conv_layout(width_divisor)
    names = {s.name for s in specs}
    missing = sorted(names - set(layers))
    extra = sorted(set(layers) - names)
    if missing or extra:
        raise ModelError(
            f"model layers do not match Inception-v3: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for s in specs:
        layer = layers[s.name]
        want = (s.out_channels, s.in_channels, *s.kernel)
        if tuple(layer.weight.shape) != want:
            raise ModelError(f"layer {s.name} has weight shape {layer.weight.shape}, expected {want}")
        for part in ("beta", "mean", "var"):
            if tuple(getattr(layer, part).shape) != (s.out_channels,):
                raise ModelError(f"layer {s.name} has a {part} of the wrong shape")
        if layer.stride != s.stride or tuple(layer.padding) != s.padding:
            raise ModelError(f"layer {s.name} has stride/padding {layer.stride}/{layer.padding}, "
                             f"expected {s.stride}/{s.padding}")


class _GraphWriter:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self, layers: Mapping[str, ConvLayer]):
        self.layers = layers
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def conv(self, name: str, x: str) -> str:
        layer = self.layers[name]
        w, b = layer.folded()
        self.inits.append(numpy_helper.from_array(w, f"{name}.weight"))
        self.inits.append(numpy_helper.from_array(b, f"{name}.bias"))
        ph, pw = layer.padding
        self.nodes.append(helper.make_node(
            "Conv", [x, f"{name}.weight", f"{name}.bias"], [f"{name}.conv"], name=f"{name}.conv",
            kernel_shape=list(w.shape[2:]), strides=[layer.stride] * 2, pads=[ph, pw, ph, pw],
        ))
        self.nodes.append(helper.make_node("Relu", [f"{name}.conv"], [name], name=f"{name}.relu"))
        return name

    def seq(self, x: str, *names: str) -> str:
        for name in names:
            x = self.conv(name, x)
        return x

    def max_pool(self, name: str, x: str, stride: int = 2, pad: int = 0) -> str:
        self.nodes.append(helper.make_node(
            "MaxPool", [x], [name], name=name, kernel_shape=[3, 3], strides=[stride] * 2,
            pads=[pad] * 4))
        return name

    def avg_pool(self, name: str, x: str) -> str:
        self.nodes.append(helper.make_node(
            "AveragePool", [x], [name], name=name, kernel_shape=[3, 3], strides=[1, 1],
            pads=[1, 1, 1, 1], count_include_pad=0))
        return name

    def concat(self, name: str, parts: list[str]) -> str:
        self.nodes.append(helper.make_node("Concat", parts, [name], name=name, axis=1))
        return name


def _block_a(g: _GraphWriter, n: str, x: str) -> str:
    return g.concat(n, [
        g.conv(f"{n}.conv", x),
        g.seq(x, f"{n}.tower.conv", f"{n}.tower.conv_1"),
        g.seq(x, f"{n}.tower_1.conv", f"{n}.tower_1.conv_1", f"{n}.tower_1.conv_2"),
        g.conv(f"{n}.tower_2.conv", g.avg_pool(f"{n}.tower_2.pool", x)),
    ])


def _block_b(g: _GraphWriter, n: str, x: str) -> str:
    return g.concat(n, [
        g.conv(f"{n}.conv", x),
        g.seq(x, f"{n}.tower.conv", f"{n}.tower.conv_1", f"{n}.tower.conv_2"),
        g.max_pool(f"{n}.pool", x),
    ])


def _block_c(g: _GraphWriter, n: str, x: str) -> str:
    return g.concat(n, [
        g.conv(f"{n}.conv", x),
        g.seq(x, *(f"{n}.tower.conv{s}" for s in ("", "_1", "_2"))),
        g.seq(x, *(f"{n}.tower_1.conv{s}" for s in ("", "_1", "_2", "_3", "_4"))),
        g.conv(f"{n}.tower_2.conv", g.avg_pool(f"{n}.tower_2.pool", x)),
    ])


def _block_d(g: _GraphWriter, n: str, x: str) -> str:
    return g.concat(n, [
        g.seq(x, f"{n}.tower.conv", f"{n}.tower.conv_1"),
        g.seq(x, *(f"{n}.tower_1.conv{s}" for s in ("", "_1", "_2", "_3"))),
        g.max_pool(f"{n}.pool", x),
    ])


def _block_e(g: _GraphWriter, n: str, x: str, max_pool: bool) -> str:
    a = g.conv(f"{n}.tower_conv", x)
    b = g.seq(x, f"{n}.tower_1_conv", f"{n}.tower_1_conv_1")
    pooled = (g.max_pool(f"{n}.tower_2_pool", x, stride=1, pad=1) if max_pool
              else g.avg_pool(f"{n}.tower_2_pool", x))
    return g.concat(n, [
        g.conv(f"{n}.conv", x),
        g.conv(f"{n}.tower_mixed_conv", a),
        g.conv(f"{n}.tower_mixed_conv_1", a),
        g.conv(f"{n}.tower_1_mixed_conv", b),
        g.conv(f"{n}.tower_1_mixed_conv_1", b),
        g.conv(f"{n}.tower_2_conv", pooled),
    ])


def build_graph(layers: Mapping[str, ConvLayer], *, name: str = "inception_v3",
                doc: str = "") -> onnx.ModelProto:
    """Assemble and check the ONNX model of Inception-v3 from its layers.

    Parameters
    ----------
    layers : mapping of str to ConvLayer
        Every name of :func:`conv_layout` (any width).
    name : str
        Graph name.
    doc : str
        Free text stored as the model's ``doc_string``.

    Returns
    -------
    onnx.ModelProto
        Input ``images`` float32 ``(batch, 3, height, width)``, output
        ``features`` float32 ``(batch, output_dim)``; passed ``onnx.checker``.
    """
    g = _GraphWriter(layers)
    x = g.seq(INPUT_NAME, "conv", "conv_1", "conv_2")
    x = g.max_pool("pool0", x)
    x = g.seq(x, "conv_3", "conv_4")
    x = g.max_pool("pool1", x)
    for n in ("mixed", "mixed_1", "mixed_2"):
        x = _block_a(g, n, x)
    x = _block_b(g, "mixed_3", x)
    for n in ("mixed_4", "mixed_5", "mixed_6", "mixed_7"):
        x = _block_c(g, n, x)
    x = _block_d(g, "mixed_8", x)
    x = _block_e(g, "mixed_9", x, max_pool=False)
    x = _block_e(g, "mixed_10", x, max_pool=True)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool2"], name="pool2"))
    g.nodes.append(helper.make_node("Flatten", ["pool2"], [OUTPUT_NAME], name="flatten", axis=1))
    dim = int(layers["mixed_10.conv"].weight.shape[0] + layers["mixed_10.tower_mixed_conv"].weight.shape[0]
              + layers["mixed_10.tower_mixed_conv_1"].weight.shape[0]
              + layers["mixed_10.tower_1_mixed_conv"].weight.shape[0]
              + layers["mixed_10.tower_1_mixed_conv_1"].weight.shape[0]
              + layers["mixed_10.tower_2_conv"].weight.shape[0])
    return finish_model(g.nodes, g.inits, name=name, doc=doc, opset=OPSET,
                        inputs=[(INPUT_NAME, ["batch", 3, "height", "width"])],
                        outputs=[(OUTPUT_NAME, ["batch", dim])])


def count_macs(model: onnx.ModelProto, image_size: int = 299) -> dict[str, int]:
    """Multiply-accumulates per image, counted from the graph's nodes.

    Shapes are inferred for a ``(1, 3, image_size, image_size)`` input.
    ``Conv``: ``Cout * Hout * Wout * (Cin / group) * kh * kw``; ``QLinearConv``
    likewise; ``Gemm``/``MatMul``: ``M * N * K``.  Pools, ReLU and concat
    are reported separately as ``other_ops`` (one operation per output
    element times the window size), not as MACs.

    Returns
    -------
    dict
        ``{"macs": int, "conv_layers": int, "other_ops": int}``.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (1, 3, image_size, image_size)):
        d.Clear()
        d.dim_value = v
    m = onnx.shape_inference.infer_shapes(m)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    macs = other = n_conv = 0
    for node in m.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("Conv", "QLinearConv", "ConvInteger"):
            w_name = node.input[3] if node.op_type == "QLinearConv" else node.input[1]
            out = shapes.get(node.output[0])
            w = inits.get(w_name) or shapes.get(w_name)
            if not out or not w:
                raise ModelError(f"cannot infer the shape of {node.name}")
            # weight (Cout, Cin/group, kh, kw); output (1, Cout, H, W)
            macs += int(np.prod(out[1:])) * int(np.prod(w[1:]))
            n_conv += 1
        elif node.op_type in ("MaxPool", "AveragePool"):
            out = shapes.get(node.output[0], [0])
            other += int(np.prod(out)) * int(np.prod(attrs.get("kernel_shape", [1])))
        elif node.op_type in ("Relu", "GlobalAveragePool"):
            other += int(np.prod(shapes.get(node.input[0], [0])))
    return {"macs": int(macs), "conv_layers": n_conv, "other_ops": int(other)}
