"""int8 quantization: the average pools stay in float, and sessions keep them so.

ONNX Runtime fuses ``DequantizeLinear -> AveragePool -> QuantizeLinear`` back
into its slow ``QLinearAveragePool`` kernel unless the session sets
``session.disable_quant_qdq``; the int8 sidecar records that entry and
:mod:`emodist.models.session` applies it.  These tests check the graph, which
kernels a session really runs (ONNX Runtime's own profile), and that the
float pools give the same features as the fused kernel.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np

from emodist.models.quantize import FLOAT_OPS, SESSION_CONFIG, quantize_int8
from emodist.models.session import _session_options, clear_sessions, embed, read_sidecar


def _images(n: int, seed: int, size: int = 299) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size).astype(np.uint8)
    imgs = [np.broadcast_to(ramp[:, None], (size, size))]
    # smooth images (a spectrogram is not white noise): blurred noise
    for _ in range(n - 1):
        x = rng.random((size // 8 + 1, size // 8 + 1))
        x = np.kron(x, np.ones((8, 8)))[:size, :size]
        imgs.append((255 * x).astype(np.uint8))
    return np.ascontiguousarray(np.stack(imgs))


def _kernels_run(model: str, config: dict | None, tmp_path: Path) -> collections.Counter:
    """Operator types ONNX Runtime ran for one batch (its profile), with ``config``."""
    import onnxruntime as ort

    opts = _session_options(1, config)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "profile")
    sess = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 299, 299), np.float32)
    sess.run(None, {sess.get_inputs()[0].name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    return collections.Counter(e["args"]["op_name"] for e in events
                               if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"))


def _check_pools(fp32: str, tmp_path: Path, n_pools: int) -> None:
    import onnx

    cal = _images(2, seed=1)
    new = quantize_int8(fp32, tmp_path / "float_pools.onnx", cal)
    fused = quantize_int8(fp32, tmp_path / "fused_pools.onnx", cal, float_ops=())
    meta = read_sidecar(new)
    assert meta["float_ops"] == list(FLOAT_OPS) and meta["session_config"] == SESSION_CONFIG
    assert "session_config" not in read_sidecar(fused)

    ops = collections.Counter(n.op_type for n in onnx.load(new).graph.node)
    assert ops["AveragePool"] == n_pools and ops["QLinearAveragePool"] == 0
    assert ops["QLinearConv"] == 92  # every other convolution is still int8
    assert collections.Counter(
        n.op_type for n in onnx.load(fused).graph.node)["QLinearAveragePool"] == n_pools

    # what the session really runs: float pools with the sidecar's entry, the fused
    # kernel without it
    ran = _kernels_run(new, meta["session_config"], tmp_path)
    assert ran["AveragePool"] == n_pools and ran["QLinearAveragePool"] == 0
    assert _kernels_run(new, None, tmp_path)["QLinearAveragePool"] == n_pools

    # and the values: the float pool between the model's own conversions rounds
    # exactly like the fused kernel
    imgs = _images(6, seed=2)
    clear_sessions()
    a, b = embed(imgs, new, batch_size=3), embed(imgs, fused, batch_size=3)
    assert np.isfinite(a).all() and a.std() > 0
    np.testing.assert_array_equal(a, b)


def test_int8_tiny_model_keeps_its_average_pools_in_float(tiny_model, tmp_path):
    _check_pools(tiny_model, tmp_path, n_pools=8)

