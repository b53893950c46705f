"""The float64 MusiCNN network in numpy, and the tolerances against the TensorFlow reference.

Shared by ``tests/models/test_musicnn.py``, ``tests/features/test_musicnn_group.py`` and
``tests/reference/make_musicnn_reference.py``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from emodist.models import musicnn_graph as mg

#: Tolerances against the TensorFlow reference (measured differences are
#: 10-100x smaller; docs/musicnn.md).  Pools are compared through the mean
#: over patches: norm (relative) and a 16-dim random projection (absolute).
TOL = {"taggram": 1e-4, "penultimate": 5e-4, "proj16": 2e-3, "norm_rel": 1e-5}


def _bn(w, name, x):
    g, b = w[f"{name}/gamma"], w[f"{name}/beta"]
    mean, var = w[f"{name}/moving_mean"], w[f"{name}/moving_variance"]
    return (x - mean) / np.sqrt(var + mg.BN_EPS) * g + b


def numpy_musicnn(weights: dict[str, np.ndarray], patch: np.ndarray) -> dict[str, np.ndarray]:
    """models.build_musicnn for one (187, 96) patch, in float64, layer by layer."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    relu = lambda v: np.maximum(v, 0.0)
    x = _bn(w, "batch_normalization", patch.astype(np.float64))
    front = []
    pad7 = np.pad(x, ((3, 3), (0, 0)))
    for conv, norm, (kh, kw) in mg.TIMBRAL:  # 'valid' on the time-padded input
        win = sliding_window_view(pad7, (kh, kw))  # (187, 96 - kw + 1, kh, kw)
        y = np.tensordot(win, w[f"{conv}/kernel"][:, :, 0, :], axes=([2, 3], [0, 1])) + w[f"{conv}/bias"]
        front.append(_bn(w, norm, relu(y)).max(axis=1))
    for conv, norm, kh in mg.TEMPORAL:  # 'same'
        before = (kh - 1) // 2
        win = sliding_window_view(np.pad(x, ((before, kh - 1 - before), (0, 0))), kh, axis=0)
        y = np.tensordot(win, w[f"{conv}/kernel"][:, 0, 0, :], axes=([2], [0])) + w[f"{conv}/bias"]
        front.append(_bn(w, norm, relu(y)).max(axis=1))
    front = np.concatenate(front, axis=1)  # (187, 561)
    feats, h = [front], front
    for i, (conv, norm) in enumerate(mg.MIDEND):
        win = sliding_window_view(np.pad(h, ((3, 3), (0, 0))), 7, axis=0)  # (187, C, 7)
        y = np.tensordot(win, w[f"{conv}/kernel"][:, :, 0, :], axes=([2, 1], [0, 1])) + w[f"{conv}/bias"]
        y = _bn(w, norm, relu(y))
        h = y if i == 0 else y + h
        feats.append(h)
    feats = np.concatenate(feats, axis=1)  # (187, 753)
    mx, mn = feats.max(axis=0), feats.mean(axis=0)
    flat = np.stack([mx, mn], axis=1).reshape(-1)  # tf.concat([max, mean], 2) then flatten
    d = relu(_bn(w, "batch_normalization_9", flat) @ w["dense/kernel"] + w["dense/bias"])
    pen = _bn(w, "batch_normalization_10", d)
    logits = pen @ w["dense_1/kernel"] + w["dense_1/bias"]
    return {"taggram": 1 / (1 + np.exp(-logits)), "penultimate": pen, "max_pool": mx, "mean_pool": mn}
