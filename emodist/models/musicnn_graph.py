"""The MusiCNN architecture as an ONNX graph (inference only, batch norm folded where exact).

Follows ``musicnn/models.py``: input batch norm on a (187 frames x 96 mel)
patch; a front end of timbral (7x38, 7x67) and temporal (128x1, 64x1, 32x1)
convolutions, each ReLU + batch norm, max-pooled over frequency and
concatenated; a mid end of three 7-wide convolutions (the second and third
residual); a back end of max and mean pooling over time, batch norm, dense
200 + ReLU + batch norm (the penultimate layer) and dense 50 (tag logits,
sigmoid for the taggram).  Weights come from
:func:`emodist.models.tfcheckpoint.read_checkpoint`
(:func:`emodist.models.musicnn.load_weights`) or :func:`random_weights`.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from emodist.errors import ModelError
from emodist.models.onnxutil import finish_model

__all__ = [
    "BN_EPS", "INPUT_NAME", "MIDEND", "N_FRAMES", "N_MELS", "OPSET", "OUTPUTS", "TEMPORAL",
    "TIMBRAL", "build_graph", "check_weights", "expected_shapes", "random_weights",
]

#: Mel bands of one patch (musicnn/configuration.py).
N_MELS = 96
#: Frames of one patch: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1.
N_FRAMES = 187
#: Batch-norm epsilon of tf.compat.v1.layers.batch_normalization.
BN_EPS = 1e-3
#: ONNX opset of the graph.
OPSET = 17
#: Name of the graph input, ``(N, N_FRAMES, N_MELS)`` float32 patches.
INPUT_NAME = "patches"
#: Graph outputs and their widths, in graph order.
OUTPUTS = {"taggram": 50, "penultimate": 200, "max_pool": 753, "mean_pool": 753}

#: Checkpoint variables of the network -> shape (TensorFlow layouts: conv HWIO, dense IO).
#: Layer order as models.py creates them.
TIMBRAL = (("conv2d", "batch_normalization_1", (7, 38)), ("conv2d_1", "batch_normalization_2", (7, 67)))
TEMPORAL = (("conv2d_2", "batch_normalization_3", 128), ("conv2d_3", "batch_normalization_4", 64),
            ("conv2d_4", "batch_normalization_5", 32))
MIDEND = (("conv2d_5", "batch_normalization_6"), ("conv2d_6", "batch_normalization_7"),
          ("conv2d_7", "batch_normalization_8"))


def expected_shapes(n_tags: int = 50) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every model variable of a musicnn checkpoint."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(name, c):
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            shapes[f"{name}/{part}"] = (c,)

    bn("batch_normalization", 1)
    for conv, norm, (kh, kw) in TIMBRAL:
        shapes[f"{conv}/kernel"], shapes[f"{conv}/bias"] = (kh, kw, 1, 204), (204,)
        bn(norm, 204)
    for conv, norm, k in TEMPORAL:
        shapes[f"{conv}/kernel"], shapes[f"{conv}/bias"] = (k, 1, 1, 51), (51,)
        bn(norm, 51)
    cin = 561
    for conv, norm in MIDEND:
        shapes[f"{conv}/kernel"], shapes[f"{conv}/bias"] = (7, cin, 1, 64), (64,)
        bn(norm, 64)
        cin = 64
    bn("batch_normalization_9", 2 * 753)
    shapes["dense/kernel"], shapes["dense/bias"] = (2 * 753, 200), (200,)
    bn("batch_normalization_10", 200)
    shapes["dense_1/kernel"], shapes["dense_1/bias"] = (200, n_tags), (n_tags,)
    return shapes


def check_weights(weights: dict[str, np.ndarray], where: str = "checkpoint") -> None:
    """Raise ModelError unless ``weights`` has every musicnn variable with its shape."""
    for name, shape in expected_shapes().items():
        if name not in weights:
            raise ModelError(f"{where} lacks variable {name}")
        got = tuple(np.shape(weights[name]))
        if got != shape:
            raise ModelError(f"{where}: variable {name} has shape {got}, expected {shape}")
        if not np.isfinite(np.asarray(weights[name], dtype=np.float64)).all():
            raise ModelError(f"{where}: variable {name} has non-finite values")


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """A full-size random musicnn checkpoint (He-scaled kernels, plausible batch norms).

    For tests: goes through the same :func:`build_graph` as the real weights.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in expected_shapes().items():
        part = name.rsplit("/", 1)[1]
        if part == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            val = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif part == "gamma":
            val = rng.uniform(0.5, 1.5, shape)
        elif part == "moving_variance":
            val = rng.uniform(0.5, 2.0, shape)
        else:  # bias, beta, moving_mean
            val = rng.normal(0.0, 0.1, shape)
        out[name] = val.astype(np.float32)
    return out


def _bn(weights, name) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm in inference mode as ``x * scale + shift`` (float64)."""
    g = weights[f"{name}/gamma"].astype(np.float64)
    b = weights[f"{name}/beta"].astype(np.float64)
    m = weights[f"{name}/moving_mean"].astype(np.float64)
    v = weights[f"{name}/moving_variance"].astype(np.float64)
    scale = g / np.sqrt(v + BN_EPS)
    return scale, b - m * scale


class _Writer:
    def __init__(self, weights):
        self.w = weights
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def affine(self, name: str, x: str, scale, shift, shape) -> str:
        s = self.const(f"{name}.scale", np.asarray(scale, np.float32).reshape(shape))
        t = self.const(f"{name}.shift", np.asarray(shift, np.float32).reshape(shape))
        return self.node("Add", [self.node("Mul", [x, s], f"{name}.mul"), t], f"{name}.add")

    def conv_relu_bn(self, conv: str, norm: str, x: str, weight_oihw, pads) -> str:
        w = self.const(f"{conv}.weight", np.ascontiguousarray(weight_oihw, np.float32))
        b = self.const(f"{conv}.bias", self.w[f"{conv}/bias"].astype(np.float32))
        y = self.node("Conv", [x, w, b], f"{conv}.conv", pads=list(pads),
                      kernel_shape=list(weight_oihw.shape[2:]))
        y = self.node("Relu", [y], f"{conv}.relu")
        scale, shift = _bn(self.w, norm)
        return self.affine(norm, y, scale, shift, (1, -1, 1, 1))


def build_graph(weights: dict[str, np.ndarray], *, name: str = "musicnn",
                doc: str = "") -> onnx.ModelProto:
    """The musicnn inference graph with ``weights`` (names as in the checkpoint).

    Parameters
    ----------
    weights : dict of str to np.ndarray
        From :func:`emodist.models.tfcheckpoint.read_checkpoint` or
        :func:`random_weights`; checked with :func:`check_weights`.

    Returns
    -------
    onnx.ModelProto
        Input ``patches`` float32 ``(batch, 187, 96)``; outputs
        :data:`OUTPUTS` (``taggram``, ``penultimate``, ``max_pool``,
        ``mean_pool``).  Opset 17, checked.
    """
    check_weights(weights)
    g = _Writer(weights)
    x = g.node("Unsqueeze", [INPUT_NAME, g.const("axes1", np.array([1], np.int64))], "input.nchw")
    s0, t0 = _bn(weights, "batch_normalization")
    x = g.affine("batch_normalization", x, s0, t0, (1, 1, 1, 1))  # (N, 1, 187, 96)

    freq_axis = [3]
    front = []
    for conv, norm, (kh, _kw) in TIMBRAL:  # 'valid' after padding time by 3 on each side
        k = weights[f"{conv}/kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
        y = g.conv_relu_bn(conv, norm, x, k, (3, 0, 3, 0))
        front.append(g.node("ReduceMax", [y], f"{conv}.freqmax", axes=freq_axis, keepdims=1))
    for conv, norm, kh in TEMPORAL:  # TensorFlow 'same': (k-1)//2 before, the rest after
        k = weights[f"{conv}/kernel"].transpose(3, 2, 0, 1)
        before = (kh - 1) // 2
        y = g.conv_relu_bn(conv, norm, x, k, (before, 0, kh - 1 - before, 0))
        front.append(g.node("ReduceMax", [y], f"{conv}.freqmax", axes=freq_axis, keepdims=1))
    front = g.node("Concat", front, "frontend", axis=1)  # (N, 561, 187, 1)

    # mid end: TF convolves (N, 187, C, 1) with a [7, C] kernel; here C is the channel axis
    feats = [front]
    h = front
    for i, (conv, norm) in enumerate(MIDEND):
        k = weights[f"{conv}/kernel"][:, :, 0, :].transpose(2, 1, 0)[..., None]  # (64, C, 7, 1)
        y = g.conv_relu_bn(conv, norm, h, k, (3, 0, 3, 0))
        h = y if i == 0 else g.node("Add", [y, h], f"{conv}.residual")
        feats.append(h)
    feats = g.node("Concat", feats, "midend", axis=1)  # (N, 753, 187, 1)

    g.node("ReduceMax", [feats], "max_pool", axes=[2, 3], keepdims=0)
    g.node("ReduceMean", [feats], "mean_pool", axes=[2, 3], keepdims=0)
    pooled = g.node("Concat", ["max_pool", "mean_pool"], "pooled", axis=1)  # (N, 1506)

    # batch_normalization_9 on the interleaved [max_0, mean_0, max_1, ...] vector, folded into dense
    s9, t9 = _bn(weights, "batch_normalization_9")
    kernel = weights["dense/kernel"].astype(np.float64)
    folded = kernel * s9[:, None]
    bias = weights["dense/bias"].astype(np.float64) + t9 @ kernel
    folded = np.concatenate([folded[0::2], folded[1::2]])  # rows: all max, then all mean
    d = g.node("Gemm", [pooled, g.const("dense.weight", folded.astype(np.float32)),
                        g.const("dense.bias", bias.astype(np.float32))], "dense.gemm")
    d = g.node("Relu", [d], "dense.relu")
    s10, t10 = _bn(weights, "batch_normalization_10")
    pen = g.affine("batch_normalization_10", d, s10, t10, (1, -1))
    g.node("Identity", [pen], "penultimate")
    logits = g.node("Gemm", ["penultimate", g.const("dense_1.weight", weights["dense_1/kernel"]),
                             g.const("dense_1.bias", weights["dense_1/bias"])], "logits")
    g.node("Sigmoid", [logits], "taggram")

    return finish_model(g.nodes, g.inits, name=name, doc=doc, opset=OPSET,
                        inputs=[(INPUT_NAME, ["batch", N_FRAMES, N_MELS])],
                        outputs=[(out, ["batch", width]) for out, width in OUTPUTS.items()])
