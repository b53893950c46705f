"""A small trained-head ONNX model written by the tests (``test_heads.py``, ``test_predict.py``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

CLASSES = ("calmness", "power", "sadness")


def softmax_model(path: Path, width: int, seed: int = 0) -> tuple[str, np.ndarray, np.ndarray]:
    """A softmax regression written with ONNX's own helpers; returns its sha256, W and b."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = (rng.normal(size=(width, len(CLASSES))) * 0.05).astype(np.float32)
    b = rng.normal(size=len(CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["z0"]), helper.make_node("Add", ["z0", "b"], ["z"]),
         helper.make_node("Softmax", ["z"], ["probabilities"], axis=1)],
        "head", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(CLASSES)])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest(), w, b
