"""Devices for model groups: CPU or CUDA, I/O binding, and batches that halve on out-of-memory.

``device="cuda"`` (``"cuda:N"``) runs a session on ONNX Runtime's CUDA
execution provider (``pip install emodist[gpu]``, i.e. onnxruntime-gpu);
:func:`require_device` refuses with one line where the provider is missing.
:func:`run_bound` runs one batch through I/O binding, and
:func:`halving_batches` halves the batch size whenever the device runs out of
memory.
"""

from __future__ import annotations

import logging

import numpy as np

from emodist.errors import EmodistError, ModelError

__all__ = [
    "AUTO_BATCH_MAX", "DEVICES", "device_problem", "halving_batches", "out_of_memory",
    "parse_device", "require_device", "run_bound",
]

#: Devices model groups may run on (``cuda:N`` picks a GPU).
DEVICES = ("cpu", "cuda")
#: Largest automatic batch on a GPU.
AUTO_BATCH_MAX = 128
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

log = logging.getLogger(__name__)


def parse_device(device: str | None) -> tuple[str, int]:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> ``(kind, device_id)``."""
    text = str(device or "cpu").strip().lower()
    kind, _, index = text.partition(":")
    if kind not in DEVICES or (index and (kind == "cpu" or not index.isdigit())):
        raise EmodistError(f"unknown device {device!r}; use cpu, cuda or cuda:N", param="device")
    return kind, int(index or 0)


def device_problem(device: str | None) -> str | None:
    """Why ``device`` cannot run models in this process (``None`` when it can)."""
    kind, _ = parse_device(device)
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a core dependency
        return "onnxruntime is not installed"
    have = list(ort.get_available_providers())
    if _PROVIDERS[kind] in have:
        return None
    return (f"onnxruntime {ort.__version__} has no {_PROVIDERS[kind]} (it has "
            f"{', '.join(have)}); install emodist[gpu] (onnxruntime-gpu) on a machine with a "
            "CUDA GPU and driver")


def require_device(device: str | None) -> None:
    """Raise :class:`ModelError` (one line, ``--device``) unless ``device`` is usable here."""
    problem = device_problem(device)
    if problem:
        raise ModelError(f"{device}: {problem}", param="device")


def run_bound(sess, in_name: str, out_names, x: np.ndarray, device_type: str = "cuda",
              device_id: int = 0, cache: dict | None = None) -> list[np.ndarray]:
    """One inference through I/O binding: ``x`` copied into a device buffer, outputs copied back.

    The device input buffer is kept in ``cache`` per shape, so a run of
    equal batches uploads into one allocation.  Works with
    ``device_type="cpu"`` too (what the tests without a GPU check).

    Parameters
    ----------
    sess : onnxruntime.InferenceSession
    in_name : str
        The input ``x`` is bound to.
    out_names : sequence of str
        The outputs to compute.
    x : np.ndarray
        One batch of network inputs (copied as contiguous float32).
    device_type : str
        ``"cuda"`` (or ``"cpu"``).
    device_id : int
        The device's index.
    cache : dict, optional
        Shape -> device input buffer, kept between calls.

    Returns
    -------
    list of np.ndarray
        The outputs, in the order of ``out_names``, on the CPU.
    """
    import onnxruntime as ort

    cache = {} if cache is None else cache
    shape = tuple(x.shape)
    value = cache.get(shape)
    if value is None:
        value = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, device_type,
                                                          device_id)
        cache[shape] = value
    value.update_inplace(np.ascontiguousarray(x, dtype=np.float32))
    binding = sess.io_binding()
    binding.bind_ortvalue_input(in_name, value)
    for name in out_names:
        binding.bind_output(name, device_type, device_id)
    sess.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()


def out_of_memory(exc: BaseException) -> bool:
    """Whether an ONNX Runtime error says the device ran out of memory."""
    text = str(exc).lower()
    return "out of memory" in text or "failed to allocate" in text


def halving_batches(run, start: int) -> int:
    """Call ``run(batch)`` from ``start``, halving on out-of-memory; the batch that worked."""
    bs = max(1, int(start))
    while True:
        try:
            run(bs)
            return bs
        except Exception as exc:
            if bs == 1 or not out_of_memory(exc):
                raise
            log.warning("device out of memory at batch %d; retrying with %d", bs, bs // 2)
            bs //= 2
