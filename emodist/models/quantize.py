"""int8 variant of the ONNX model (ONNX Runtime static quantization).

Weights are quantized per output channel to signed int8, activations to
unsigned int8 with ranges calibrated on spectrogram images, in the
``QOperator`` format (``QLinearConv`` and friends), which ONNX Runtime runs
with its u8s8 integer kernels (AVX-512 VNNI where the CPU has it).

The first two convolutions (:data:`KEEP_FP32`, 4 % of the multiply-adds)
stay in float: quantizing them costs the most accuracy (on 32 real Emotify
spectrograms the smallest cosine to fp32 rises from 0.987 to 0.992 when
they are kept, for about 7 % of the int8 speed).

The average pools (:data:`FLOAT_OPS`: the 3 x 3 pools of eight mixed blocks) stay
in float too, between a ``DequantizeLinear`` and a ``QuantizeLinear``:
ONNX Runtime's ``QLinearAveragePool`` kernel took 29 % of the int8
network's time (81 ms per batch of 8 on one core, against 7 ms for the
float pool and its two conversions), so the int8 network runs 1.22x faster
without it (36.6 -> 30.0 CPU ms per image, the same features bit for bit).
ONNX Runtime fuses such a pair back into ``QLinearAveragePool`` unless the
session sets ``session.disable_quant_qdq``; the sidecar records that entry
under ``session_config`` and :mod:`emodist.models.session` applies it (the
QLinear operators written by the quantizer are unaffected).

Before quantization each of those pools is moved behind the 1 x 1
convolution it feeds (:func:`pools_after_convs`): a mean over the valid
pixels of a window commutes with a per-pixel affine map, so
``conv(pool(x)) + b == pool(conv(x) + b)`` exactly in real arithmetic (fp32
rounding moves the network's features by 2e-6 at most, on values up to 4).
The pool then averages the convolution's 32-192 output channels, not its
192-2048 input channels, and with it go most of the layout changes around it:
on an Intel Xeon (AVX-512 VNNI, one thread, 32 real Emotify spectrograms)
the int8 network falls from 48.4 to 41.0 CPU ms per image, and its smallest
cosine to fp32 moves from 0.9917 to 0.9921. The fp32 model is not changed.

Calibration images should look like the images the model will see;
:func:`emodist.features.calibration.synthetic_calibration_images` makes
spectrogram images of generated music-like audio (harmonic notes, noise
bursts, silence) when no real audio is at hand.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from emodist.errors import ModelError
from emodist.models.build import file_sha256, sidecar_path, to_network_input

__all__ = ["FLOAT_OPS", "KEEP_FP32", "SESSION_CONFIG", "pools_after_convs", "quantize_int8"]

#: Layers left in float32 by default (the stem's first two convolutions).
KEEP_FP32 = ("conv", "conv_1")
#: Operator types left in float (see the module notes).
FLOAT_OPS = ("AveragePool",)
#: Session config entries an int8 model built here needs (recorded in its sidecar).
SESSION_CONFIG = {"session.disable_quant_qdq": "1"}


class _Reader:
    """CalibrationDataReader over uint8 images, a few at a time."""

    def __init__(self, images: np.ndarray, input_name: str, batch: int = 4):
        self._batches = iter([{input_name: to_network_input(images[i:i + batch])}
                              for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self._batches, None)

    def rewind(self):  # pragma: no cover - not used by MinMax calibration
        pass


def pools_after_convs(model) -> int:
    """Move each average pool that feeds a 1 x 1 convolution behind it, in place.

    ``AveragePool -> Conv(1 x 1)`` becomes ``Conv(1 x 1) -> AveragePool``
    wherever that is exact: the pool does not count padding (or has none), its
    output goes to that convolution only and is not a graph output, and the
    convolution has a 1 x 1 kernel, unit strides and dilations, no padding
    and one group. Whatever read the convolution's output now reads the
    pool's, under the same name.

    Parameters
    ----------
    model : onnx.ModelProto
        The graph to rewrite; its nodes stay topologically sorted.

    Returns
    -------
    int
        The number of pools moved.
    """
    from onnx import helper

    g = model.graph
    readers: dict[str, list] = {}
    for node in g.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in g.output}

    def attrs(node) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    moved = []
    for pool in g.node:
        if pool.op_type != "AveragePool" or pool.output[0] in outputs:
            continue
        pa = attrs(pool)
        if pa.get("count_include_pad", 0) and any(pa.get("pads", ())):
            continue
        after = readers.get(pool.output[0], [])
        if len(after) != 1 or after[0].op_type != "Conv" or after[0].input[0] != pool.output[0]:
            continue
        conv = after[0]
        ca = attrs(conv)
        weight = next((i for i in g.initializer if i.name == conv.input[1]), None)
        if (weight is None or tuple(weight.dims[2:]) != (1, 1) or ca.get("group", 1) != 1
                or any(v != 1 for v in ca.get("strides", (1, 1)))
                or any(v != 1 for v in ca.get("dilations", (1, 1)))
                or any(ca.get("pads", ())) or ca.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            continue
        moved.append((pool, conv))
    for pool, conv in moved:
        out = conv.output[0]
        conv.input[0] = pool.input[0]
        conv.output[0] = out + "_before_pool"
        pool.input[0] = conv.output[0]
        pool.output[0] = out
    if moved:
        # each pool now runs after its convolution: sort the nodes again
        order, ready = [], {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
        pending = list(g.node)
        while pending:
            left = []
            for n in pending:
                if all(i in ready for i in n.input):
                    order.append(n)
                    ready.update(n.output)
                else:
                    left.append(n)
            if len(left) == len(pending):
                raise ModelError("the graph is not a DAG after moving its average pools")
            pending = left
        del g.node[:]
        g.node.extend(order)
        del g.value_info[:]
    return len(moved)


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike,
                  calibration_images: np.ndarray, *, per_channel: bool = True,
                  keep_fp32: tuple[str, ...] = KEEP_FP32,
                  float_ops: tuple[str, ...] = FLOAT_OPS, move_pools: bool = True) -> str:
    """Write an int8 copy of an fp32 model built by :mod:`emodist.models.build`.

    Parameters
    ----------
    fp32_path : str or path-like
        Local fp32 model with its sidecar.
    out_path : str or path-like
        Where to write the int8 model; its sidecar gets ``precision: int8``,
        ``fp32_sha256`` and the number of calibration images.
    calibration_images : np.ndarray
        uint8 ``(N, H, W)`` spectrogram images.
    per_channel : bool
        Per-output-channel weight scales (recommended for folded batch norms).
    keep_fp32 : tuple of str
        Layers (graph node-name prefixes such as ``"conv_1"``) left in float.
    float_ops : tuple of str
        Operator types left in float (with :data:`SESSION_CONFIG` in the
        sidecar so that ONNX Runtime keeps them so).
    move_pools : bool
        Quantize the graph with its average pools behind their 1 x 1
        convolutions (:func:`pools_after_convs`); recorded in the sidecar as
        ``graph_rewrites``.

    Returns
    -------
    str
        The int8 model path.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    meta = json.loads(Path(sidecar_path(str(fp32_path))).read_text())
    images = np.asarray(calibration_images)
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise ModelError("calibration images must be a non-empty uint8 (N, H, W) array")

    class Reader(_Reader, CalibrationDataReader):
        pass

    import onnx

    model = onnx.load(str(fp32_path))
    exclude = [n.name for n in model.graph.node
               if n.name.split(".")[0] in set(keep_fp32) or n.op_type in set(float_ops)]
    moved = pools_after_convs(model) if move_pools else 0
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="emodist-quant-") as tmp:
        tmp_out = Path(tmp) / "int8.onnx"
        source = fp32_path
        if moved:
            source = Path(tmp) / "rewritten.onnx"
            onnx.save(model, str(source))
        quantize_static(
            str(source), str(tmp_out), Reader(images, meta["input_name"]),
            quant_format=QuantFormat.QOperator, per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        data = tmp_out.read_bytes()
    out_path.write_bytes(data)
    qmeta = dict(meta, sha256=file_sha256(data), precision="int8",
                 fp32_sha256=meta["sha256"], calibration_images=len(images),
                 quantization="onnxruntime static, QOperator, u8 activations, "
                              f"s8 weights{' per channel' if per_channel else ''}, MinMax",
                 fp32_layers=list(keep_fp32), float_ops=list(float_ops))
    if float_ops:
        qmeta["session_config"] = dict(SESSION_CONFIG)
    if moved:
        qmeta["graph_rewrites"] = [f"{moved} average pools after their 1 x 1 convolutions"]
    Path(sidecar_path(str(out_path))).write_text(json.dumps(qmeta, indent=2, sort_keys=True) + "\n")
    return str(out_path)
