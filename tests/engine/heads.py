"""A small trained-head ONNX model and the model record run_predict reads, written by the engine tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
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




@dataclass(frozen=True)
class Input:
    group: str
    features: tuple
    description: dict


@dataclass(frozen=True)
class Model:
    """What run_predict reads of a trained model (the fields of its verified card)."""

    name: str
    classes: tuple
    inputs: tuple
    onnx_path: str
    onnx_sha256: str
    card: dict
    path: str = "model"
    input_name: str = "X"
    input_dtype: str = "float32"
    outputs: dict = field(default_factory=lambda: {"probabilities": "probabilities"})

    @property
    def feature_names(self):
        return [n for i in self.inputs for n in i.features]
