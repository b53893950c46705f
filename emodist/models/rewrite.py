"""Exact graph rewrites applied to a model before ONNX Runtime loads it.

A rewrite here changes how a graph computes, never what it computes: the
rewritten graph gives the same bits as the file on every input of finite
values, so the model file, its SHA-256 and every value stored from it stay
as they are.  :func:`for_session` is what :mod:`emodist.models.session`
calls on every model it opens; the session's model metadata names what was
applied (:data:`METADATA_KEY`).

Two rewrites exist, both for MusiCNN's front end, whose five convolutions
each end in ``Conv -> Relu -> Mul -> Add -> ReduceMax`` over the frequency
axis (a ReLU, a batch normalisation folded into a per-channel scale and
shift, then the maximum over frequency):

- :func:`max_before_affine`.  ReLU and an affine map with a positive scale
  are non-decreasing, and rounding keeps them so, so the maximum can be
  taken first and the ReLU and the affine map applied to what is left: 59
  or 96 times fewer values.  For a channel whose scale is negative the
  affine map is decreasing and the maximum of the result is taken where the
  convolution is smallest; that channel's weights and bias are negated
  (which negates its output exactly), its maximum taken, and the sign
  restored before the ReLU.
- :func:`pool_blocked`, on the CPU of an x86-64 machine.  ONNX Runtime
  runs these convolutions in a blocked channel layout (NCHWc, 8 or 16
  channels a block) and must reorder their large outputs back to NCHW for
  ``ReduceMax``, which it has no blocked kernel for.  Its ``MaxPool`` has
  one, for a channel count that fills whole blocks: the convolution gets
  zero filters up to a multiple of 16 (each channel's sum is its own, so
  the others do not move), the maximum becomes a ``MaxPool`` over the
  frequency axis, and a ``Slice`` drops the padding channels from the small
  pooled output.  Elsewhere (a GPU, another CPU) ``MaxPool`` has no such
  kernel and ran slower than ``ReduceMax``, so the rewrite is left out.

On the real MSD tagger the two run the network 1.4x as fast on one CPU
thread (``benchmarks/bench_musicnn.py``, the rewritten graph against the
file's).
"""

from __future__ import annotations

import platform

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["METADATA_KEY", "for_session", "max_before_affine", "pool_blocked"]

#: Model metadata key naming the rewrites a graph went through (ONNX
#: Runtime shows it in ``session.get_modelmeta().custom_metadata_map``).
METADATA_KEY = "emodist.rewrites"
#: Channels of one block of ONNX Runtime's blocked layout, or a multiple of it
#: (16 with AVX-512, 8 with AVX2).
BLOCK = 16


def blocked_layout(device: str = "cpu") -> bool:
    """Whether ONNX Runtime runs ``device``'s convolutions in its blocked
    layout (the CPU of an x86-64 machine), where :func:`pool_blocked` pays."""
    machine = platform.machine().lower()
    return str(device).split(":")[0] == "cpu" and machine in ("x86_64", "amd64")


def for_session(data: bytes, device: str = "cpu") -> bytes:
    """The model bytes ONNX Runtime should load: ``data`` with the exact rewrites applied.

    :func:`max_before_affine` always, then :func:`pool_blocked` where
    :func:`blocked_layout` says it pays.  ``data`` itself is returned,
    untouched, when no rewrite applies (a graph without ``ReduceMax`` is
    not even parsed).
    """
    if b"ReduceMax" not in data:
        return data
    model = onnx.load_from_string(data)
    model, n = max_before_affine(model)
    if blocked_layout(device):
        model, m = pool_blocked(model)
        n += m
    return model.SerializeToString() if n else data


def _record(model: onnx.ModelProto, entry: str) -> None:
    """Append ``entry`` to the model's :data:`METADATA_KEY` metadata."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = f"{prop.value}, {entry}"
            return
    model.metadata_props.add(key=METADATA_KEY, value=entry)


def _uses(graph) -> tuple[dict, dict, set]:
    """Producer of each tensor, number of readers of each, and the graph's outputs."""
    producer = {o: n for n in graph.node for o in n.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    return producer, uses, {o.name for o in graph.output}


def _splice(graph, replace: dict[str, list], drop: set[str], replaced: set[str]) -> None:
    """Put ``replace[name]``'s nodes where the node writing ``name`` was, remove the
    nodes writing a tensor in ``drop``, and the initializers in ``replaced`` that
    no node reads any more (so that ONNX Runtime does not warn about them)."""
    nodes = []
    for node in graph.node:
        if node.output and node.output[0] in replace:
            nodes.extend(replace[node.output[0]])
        elif not (node.output and node.output[0] in drop):
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    used |= {name for node in graph.node for a in node.attribute
             for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))
             for sub in g.node for name in sub.input}
    keep = [t for t in graph.initializer if t.name in used or t.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _initializers(graph) -> dict:
    return {t.name: t for t in graph.initializer}


def _reduced_axes(node, inits: dict) -> tuple[list[int] | None, int]:
    """``ReduceMax``'s axes (attribute, or constant input from opset 18) and keepdims."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        if node.input[1] not in inits:
            return None, 1
        axes = numpy_helper.to_array(inits[node.input[1]]).tolist()
    if axes is None:
        return None, 1
    return [int(a) for a in axes], int(attrs.get("keepdims", 1))


def _per_channel(values: np.ndarray) -> np.ndarray | None:
    """``values`` as a ``(1, C, 1, 1)`` array (``C`` may be 1), or None when it
    varies along another axis of a 4-D tensor."""
    if values.ndim > 4:
        return None
    full = values.reshape((1,) * (4 - values.ndim) + values.shape)
    if full.shape[0] != 1 or full.shape[2] != 1 or full.shape[3] != 1:
        return None
    return full


def _constant(graph, values: np.ndarray, name: str, kept: list[int]) -> str:
    """Add a ``(1, C, 1, 1)`` constant, less the axes not in ``kept``, to ``graph``; its name."""
    shaped = values.reshape([values.shape[d] for d in kept])
    graph.initializer.append(numpy_helper.from_array(shaped, name))
    return name


def max_before_affine(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Take each ``Conv -> Relu -> Mul -> Add -> ReduceMax`` chain's maximum first.

    A chain is rewritten when its four intermediate tensors each feed only
    the next node (and are not graph outputs), the convolution's weights
    and bias and the ``Mul`` and ``Add`` operands are constants that vary
    along the channel axis at most, and ``ReduceMax`` reduces spatial axes
    (2 and/or 3 of a 4-D tensor) only.  It becomes ``Conv`` (weights and
    bias of the channels with a negative scale negated) ``-> ReduceMax ->
    Mul(sign) -> Relu -> Mul -> Add``, the ``Mul(sign)`` left out when no
    scale is negative.

    Parameters
    ----------
    model : onnx.ModelProto
        Left unchanged.

    Returns
    -------
    model : onnx.ModelProto
        A rewritten copy (``model`` itself when no chain matches).
    n : int
        Number of chains rewritten.
    """
    graph = model.graph
    inits = _initializers(graph)
    producer, uses, outputs = _uses(graph)

    def only_into(name: str) -> bool:
        return uses.get(name, 0) == 1 and name not in outputs

    plans = []
    for rmax in graph.node:
        if rmax.op_type != "ReduceMax" or rmax.domain not in ("", "ai.onnx"):
            continue
        axes, keepdims = _reduced_axes(rmax, inits)
        if not axes or any(a not in (2, 3, -1, -2) for a in axes):
            continue
        reduced = sorted({a % 4 for a in axes})
        add = producer.get(rmax.input[0])
        mul = producer.get(add.input[0]) if add is not None and add.op_type == "Add" else None
        relu = producer.get(mul.input[0]) if mul is not None and mul.op_type == "Mul" else None
        conv = producer.get(relu.input[0]) if relu is not None and relu.op_type == "Relu" else None
        if conv is None or conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx"):
            continue
        if not all(only_into(n.output[0]) for n in (conv, relu, mul, add)):
            continue
        if len(mul.input) != 2 or len(add.input) != 2 or mul.input[1] not in inits \
                or add.input[1] not in inits or conv.input[1] not in inits \
                or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits):
            continue
        scale = _per_channel(numpy_helper.to_array(inits[mul.input[1]]))
        shift = _per_channel(numpy_helper.to_array(inits[add.input[1]]))
        weight = numpy_helper.to_array(inits[conv.input[1]])
        if scale is None or shift is None or weight.ndim != 4 or \
                scale.shape[1] not in (1, weight.shape[0]):
            continue
        plans.append((conv, relu, mul, add, rmax, reduced, keepdims, scale, shift, weight))
    if not plans:
        return model, 0

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = _initializers(graph)
    replace: dict[str, list] = {}
    drop: set[str] = set()
    replaced_inits: set[str] = set()
    for conv, relu, mul, add, rmax, reduced, keepdims, scale, shift, weight in plans:
        tag = (conv.name or conv.output[0]) + "__maxfirst"
        sign = np.where(scale.reshape(-1) < 0, -1.0, 1.0).astype(weight.dtype)
        if sign.size == 1:
            sign = np.full(weight.shape[0], sign[0], weight.dtype)
        flip = bool((sign < 0).any())
        new_conv = onnx.NodeProto()
        new_conv.CopyFrom(conv)
        if flip:
            w_name = f"{tag}.weight"
            graph.initializer.append(numpy_helper.from_array(weight * sign[:, None, None, None],
                                                             w_name))
            new_conv.input[1] = w_name
            if len(conv.input) > 2 and conv.input[2]:
                bias = numpy_helper.to_array(inits[conv.input[2]])
                b_name = f"{tag}.bias"
                graph.initializer.append(numpy_helper.from_array(bias * sign, b_name))
                new_conv.input[2] = b_name
        maxed = f"{tag}.max"
        reduce_max = onnx.NodeProto()
        reduce_max.CopyFrom(rmax)
        reduce_max.name = f"{tag}.reducemax"
        reduce_max.input[0] = conv.output[0]
        reduce_max.output[0] = maxed
        kept = [d for d in range(4) if keepdims or d not in reduced]
        nodes = [new_conv, reduce_max]
        current = maxed
        if flip:
            nodes.append(helper.make_node(
                "Mul", [current, _constant(graph, sign.reshape(1, -1, 1, 1), f"{tag}.sign", kept)],
                [f"{tag}.signed"], name=f"{tag}.unflip"))
            current = f"{tag}.signed"
        nodes += [
            helper.make_node("Relu", [current], [f"{tag}.relu"], name=f"{tag}.relu"),
            helper.make_node("Mul", [f"{tag}.relu", _constant(graph, scale, f"{tag}.scale", kept)],
                             [f"{tag}.scaled"], name=f"{tag}.scale"),
            helper.make_node("Add", [f"{tag}.scaled", _constant(graph, shift, f"{tag}.shift", kept)],
                             [rmax.output[0]], name=f"{tag}.shift"),
        ]
        replace[rmax.output[0]] = nodes
        drop.update(n.output[0] for n in (conv, relu, mul, add))
        replaced_inits.update(conv.input[1:3] if flip else ())
        replaced_inits.update((mul.input[1], add.input[1]))
    _splice(graph, replace, drop, replaced_inits)
    _record(out, f"max_before_affine x{len(plans)}")
    return out, len(plans)


def _spatial_sizes(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """``(H, W)`` of every 4-D tensor whose two last sizes shape inference knows."""
    inferred = onnx.shape_inference.infer_shapes(model)
    sizes = {}
    for vi in inferred.graph.value_info:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[2].dim_value > 0 and dims[3].dim_value > 0:
            sizes[vi.name] = (int(dims[2].dim_value), int(dims[3].dim_value))
    return sizes


def pool_blocked(model: onnx.ModelProto, block: int = BLOCK) -> tuple[onnx.ModelProto, int]:
    """Take each ``Conv -> ReduceMax`` maximum with a ``MaxPool`` in the blocked layout.

    A pair is rewritten when the convolution (2-D, one group, constant
    weights and bias) feeds only the ``ReduceMax``, which keeps its
    dimensions and reduces axis 3, axis 2 or both, of a size shape
    inference knows.  The convolution gets zero filters (and zero biases)
    up to a multiple of ``block`` channels, the ``ReduceMax`` becomes a
    ``MaxPool`` of 1 x W, H x 1 or a ``GlobalMaxPool``, and a ``Slice``
    keeps the first channels, those of the file's convolution.

    Parameters
    ----------
    model : onnx.ModelProto
        Left unchanged.
    block : int
        Channel count that the padded convolution's channels are a multiple of.

    Returns
    -------
    model : onnx.ModelProto
        A rewritten copy (``model`` itself when no pair matches).
    n : int
        Number of pairs rewritten.
    """
    graph = model.graph
    inits = _initializers(graph)
    producer, uses, outputs = _uses(graph)
    candidates = []
    for rmax in graph.node:
        if rmax.op_type != "ReduceMax" or rmax.domain not in ("", "ai.onnx"):
            continue
        axes, keepdims = _reduced_axes(rmax, inits)
        if not axes or keepdims != 1 or any(a not in (2, 3, -1, -2) for a in axes):
            continue
        conv = producer.get(rmax.input[0])
        if conv is None or conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx"):
            continue
        y = conv.output[0]
        groups = {a.name: helper.get_attribute_value(a) for a in conv.attribute}.get("group", 1)
        if uses.get(y, 0) != 1 or y in outputs or groups != 1 or conv.input[1] not in inits \
                or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits):
            continue
        weight = numpy_helper.to_array(inits[conv.input[1]])
        if weight.ndim != 4:
            continue
        candidates.append((conv, rmax, sorted({a % 4 for a in axes}), weight))
    if not candidates:
        return model, 0
    sizes = _spatial_sizes(model)
    plans = [c for c in candidates if c[2] == [2, 3] or c[0].output[0] in sizes]
    if not plans:
        return model, 0

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    replace: dict[str, list] = {}
    drop: set[str] = set()
    replaced_inits: set[str] = set()
    for conv, rmax, reduced, weight in plans:
        tag = (conv.name or conv.output[0]) + "__blocked"
        channels = weight.shape[0]
        pad = (-channels) % block
        new_conv = onnx.NodeProto()
        new_conv.CopyFrom(conv)
        if pad:
            zeros = np.zeros((pad,) + weight.shape[1:], weight.dtype)
            graph.initializer.append(numpy_helper.from_array(np.concatenate([weight, zeros]),
                                                             f"{tag}.weight"))
            new_conv.input[1] = f"{tag}.weight"
            replaced_inits.add(conv.input[1])
            if len(conv.input) > 2 and conv.input[2]:
                bias = numpy_helper.to_array(_initializers(graph)[conv.input[2]])
                graph.initializer.append(numpy_helper.from_array(
                    np.concatenate([bias, np.zeros(pad, bias.dtype)]), f"{tag}.bias"))
                new_conv.input[2] = f"{tag}.bias"
                replaced_inits.add(conv.input[2])
        pooled = f"{tag}.pool" if pad else rmax.output[0]
        if reduced == [2, 3]:
            pool = helper.make_node("GlobalMaxPool", [conv.output[0]], [pooled], name=f"{tag}.pool")
        else:
            h, w = sizes[conv.output[0]]
            kernel = [1, w] if reduced == [3] else [h, 1]
            pool = helper.make_node("MaxPool", [conv.output[0]], [pooled], name=f"{tag}.pool",
                                    kernel_shape=kernel)
        nodes = [new_conv, pool]
        if pad:
            for name, value in (("starts", 0), ("ends", channels), ("axes", 1)):
                graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64),
                                                                 f"{tag}.{name}"))
            nodes.append(helper.make_node(
                "Slice", [pooled, f"{tag}.starts", f"{tag}.ends", f"{tag}.axes"],
                [rmax.output[0]], name=f"{tag}.slice"))
        replace[rmax.output[0]] = nodes
        drop.add(conv.output[0])
        if len(rmax.input) > 1 and rmax.input[1]:
            replaced_inits.add(rmax.input[1])
    _splice(graph, replace, drop, replaced_inits)
    _record(out, f"pool_blocked x{len(plans)}")
    return out, len(plans)
