"""A small log-mel ONNX model and its model card, written by the tests themselves.

Shared by ``test_model_card.py`` and ``test_model_runner.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: the card model's input patch (frames x mel bands) and embedding width
FRAMES, MELS, EMB = 31, 40, 8


def logmel_model(path: Path, seed: int = 0) -> str:
    """x (N, FRAMES, MELS) -> emb = tanh(mean_t(x) @ W) (N, 8), peak = max_t(x) (N, MELS)."""
    w = np.random.default_rng(seed).standard_normal((MELS, EMB)).astype(np.float32) * 0.1
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0),
             helper.make_node("MatMul", ["m", "W"], ["z"]),
             helper.make_node("Tanh", ["z"], ["emb"]),
             helper.make_node("ReduceMax", ["x"], ["peak"], axes=[1], keepdims=0)]
    graph = helper.make_graph(
        nodes, "card_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", FRAMES, MELS])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["n", EMB]),
         helper.make_tensor_value_info("peak", TensorProto.FLOAT, ["n", MELS])],
        initializer=[numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


CARD = """name = "{name}"
licence = "CC0-1.0"
model = "{model}"
{sha}
[input]
kind = "logmel"
sr = 16000
n_fft = 512
hop = 256
n_mels = {mels}
scale = "db"
patch_frames = {frames}

[[outputs]]
name = "emb"
width = {emb}

[[outputs]]
name = "peak"
width = {mels}
"""


def write_card(folder: Path, name="mymodel", sha=None, **kw) -> Path:
    """A card of a new ``m.onnx`` in ``folder``; ``sha`` its sha256 line (default: the model's)."""
    folder.mkdir(parents=True, exist_ok=True)
    logmel_model(folder / "m.onnx")
    if sha is None:
        sha = f'sha256 = "{hashlib.sha256((folder / "m.onnx").read_bytes()).hexdigest()}"'
    text = CARD.format(name=name, model="m.onnx", sha=sha, mels=kw.get("mels", MELS),
                       frames=FRAMES, emb=kw.get("emb", EMB))
    (folder / "card.toml").write_text(text)
    return folder / "card.toml"
