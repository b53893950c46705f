"""ONNX Runtime sessions for the model groups, cached once per process.

A session is expensive to create (the real model is 87 MB) and cannot be
pickled, so each process (each Dask worker) keeps the sessions it opened in
a module-level cache keyed by ``(model_url, threads, device)``.  The model file is
read once through fsspec (a local path or a URL such as ``s3://``), its
SHA-256 is checked against the requested hash and the sidecar's
(:func:`read_model`, :func:`check_sha256`) before the first use, the graph
goes through the exact rewrites of :mod:`emodist.models.rewrite` (same
outputs, bit for bit, less work), and
``intra_op_num_threads`` is set from the caller's thread budget, so workers
never oversubscribe the cores.

:func:`run_outputs` is the one way a model runs: outputs of float32 inputs
(or of inputs a ``convert`` function turns into them batch by batch), in
batches, on the cached session; every model group reaches it through
:meth:`emodist.features.base.WorkerContext.run_model`.  :func:`embed` runs
it on uint8 spectrogram images (one preallocated float32 buffer, the last,
shorter batch a leading slice of it).

``device="cuda"`` (``"cuda:N"``) runs the session on ONNX Runtime's CUDA
execution provider (``pip install emodist[gpu]``, i.e. onnxruntime-gpu):
inputs and outputs go through I/O binding (one device input buffer per
batch shape, reused), and the batch size is automatic: a whole chunk per
call up to :data:`AUTO_BATCH_MAX`, halved whenever the device runs out of
memory, the size that worked remembered per session and input shape.  Where
the provider is missing, :func:`require_device` refuses with one line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import numpy as np

from emodist.errors import EmodistError, ModelError
from emodist.models.build import file_sha256, sidecar_path, to_network_input
from emodist.models.devices import (
    AUTO_BATCH_MAX,
    halving_batches,
    parse_device,
    require_device,
    run_bound,
)
from emodist.models.rewrite import for_session
from emodist.spec import BATCH_SIZE

__all__ = [
    "MODEL_ENV", "MODEL_FILE", "check_sha256", "clear_sessions", "default_model_path", "embed",
    "get_session", "read_model", "read_sidecar", "run_outputs",
]

#: Environment variable overriding the default model location.
MODEL_ENV = "EMODIST_MODEL"
#: File name of the real model in the cache folder.
MODEL_FILE = "inception_v3_fid.onnx"

log = logging.getLogger(__name__)

_SESSIONS: dict[tuple, tuple[object, dict]] = {}
_AUTO_BATCH: dict[tuple, int] = {}
_LOCK = threading.Lock()


def default_model_path() -> str:
    """Where the real model lives: ``$EMODIST_MODEL`` or the user cache folder.

    Returns
    -------
    str
        ``$EMODIST_MODEL`` when set, else
        ``<user cache dir>/emodist/inception_v3_fid.onnx`` (platformdirs).
    """
    env = os.environ.get(MODEL_ENV)
    if env:
        return env
    import platformdirs

    return str(Path(platformdirs.user_cache_dir("emodist")) / MODEL_FILE)


def _read_bytes(url: str, storage_options: dict | None) -> bytes:
    import fsspec

    try:
        with fsspec.open(url, "rb", **(storage_options or {})) as f:
            return f.read()
    except FileNotFoundError:
        raise ModelError(f"model file not found: {url} (build it with 'emodist model build')") from None
    except OSError as exc:
        raise ModelError(f"cannot read model {url}: {exc}") from None


def _exists(url: str, storage_options: dict | None) -> bool:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        return bool(fs.exists(path))
    except (OSError, ValueError):
        return False


def read_sidecar(model_url: str, storage_options: dict | None = None, *,
                 build: str = "") -> dict:
    """Read the JSON written next to a model (``<model>.json``).

    Parameters
    ----------
    model_url : str
        Local path or fsspec URL of the ``.onnx`` file.
    storage_options : dict, optional
        fsspec options (credentials, endpoint) for remote URLs.
    build : str
        The ``emodist model build`` target that makes this model
        (``musicnn-msd``): a missing model's message names it.

    Returns
    -------
    dict
        Keys include ``sha256``, ``output_dim``, ``input_name``,
        ``output_name``, ``image_size``.

    Raises
    ------
    ModelError
        The sidecar is missing or not valid JSON with those keys.
    """
    url = sidecar_path(str(model_url))
    try:
        meta = json.loads(_read_bytes(url, storage_options).decode("utf-8"))
    except ModelError:
        if not _exists(str(model_url), storage_options):
            how = (f"build it with 'emodist model build {build}'" if build else
                   "build it with 'emodist model build' or pass --model")
            raise ModelError(f"model not found: {model_url} ({how})") from None
        raise ModelError(f"model sidecar not found: {url} (build the model with "
                         "'emodist model build')") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"model sidecar {url} is not valid JSON") from None
    required = ("sha256", "output_dim", "input_name", "output_name", "image_size")
    missing = [k for k in required if k not in meta]
    if missing:
        raise ModelError(f"model sidecar {url} lacks {', '.join(missing)}")
    return meta


def check_sha256(url: str, actual: str, expected: str | None, *, source: str = "the requested",
                 hint: str = "", param: str | None = None) -> None:
    """Refuse, in one line, a model whose hash is not the expected one.

    Parameters
    ----------
    url : str
        The model, for the message.
    actual : str
        SHA-256 of the model's bytes.
    expected : str or None
        The hash asked for; ``None`` (or empty) checks nothing.
    source : str
        Who asks for ``expected`` (``"the requested"``, ``"its sidecar's"``,
        ``"the card's"``), for the message.
    hint : str
        What to do about it, appended to the message.
    param : str, optional
        The parameter at fault (the flag that named the model).

    Raises
    ------
    ModelError
        ``actual`` is not ``expected``.
    """
    if expected and actual != expected:
        raise ModelError(f"model {url} has sha256 {actual[:12]}..., not {source} "
                         f"{expected[:12]}...{hint}", param=param)


def read_model(model_url: str | None = None, *, sha256: str | None = None,
               storage_options: dict | None = None, meta: dict | None = None,
               param: str | None = None) -> tuple[bytes, dict]:
    """A model's bytes and sidecar, its hash checked against both the request and the sidecar.

    Parameters
    ----------
    model_url : str, optional
        Local path or fsspec URL of the model; default :func:`default_model_path`.
    sha256 : str, optional
        Expected SHA-256 of the model file (a store's record, a card's hash).
    storage_options : dict, optional
        fsspec options for remote URLs.
    meta : dict, optional
        What the sidecar would say, for a model that has none (a model
        card); default: read the sidecar (:func:`read_sidecar`).
    param : str, optional
        The parameter that named the model, for a hash refusal.

    Returns
    -------
    data : bytes
        The model file.
    meta : dict
        The sidecar, with ``sha256`` the file's own hash.

    Raises
    ------
    ModelError
        Missing model or sidecar, or a hash that is not the requested or
        the sidecar's.
    """
    url = str(model_url or default_model_path())
    meta = dict(meta) if meta is not None else read_sidecar(url, storage_options)
    data = _read_bytes(url, storage_options)
    actual = file_sha256(data)
    check_sha256(url, actual, sha256, param=param)
    check_sha256(url, actual, meta.get("sha256"), source="its sidecar's", param=param,
                 hint=f" ({sidecar_path(url)} describes another file; rebuild the model with "
                 "'emodist model build')")
    return data, dict(meta, sha256=actual)


def _session_options(threads: int, config: dict | None = None):
    """Session options: ``threads`` intra-op threads, sequential, every graph
    optimisation, plus the model sidecar's ``session_config`` entries."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if int(threads) <= 1:
        # a single-threaded session must not spin a thread pool
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in (config or {}).items():
        opts.add_session_config_entry(str(key), str(value))
    return opts


def get_session(model_url: str | None = None, sha256: str | None = None, threads: int = 1,
                storage_options: dict | None = None, device: str = "cpu"):
    """The process-wide ONNX Runtime session of a model (created on first use).

    Parameters
    ----------
    model_url : str, optional
        Local path or fsspec URL of the model; default
        :func:`default_model_path`.
    sha256 : str, optional
        Expected SHA-256 of the model file; default: the sidecar's.
    threads : int
        ``intra_op_num_threads`` of the session (the caller's core budget).
    storage_options : dict, optional
        fsspec options for remote URLs.
    device : str
        ``"cpu"`` or ``"cuda"`` / ``"cuda:N"`` (CUDA execution provider).

    Returns
    -------
    onnxruntime.InferenceSession

    Raises
    ------
    ModelError
        Missing model or sidecar, hash mismatch, or a file ONNX Runtime
        cannot load.
    """
    return _cached(model_url, sha256, threads, storage_options, device)[0]


def _providers(device: str) -> list:
    kind, index = parse_device(device)
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    require_device(device)
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def _cached(model_url, sha256, threads, storage_options, device="cpu",
            meta=None) -> tuple[object, dict]:
    url = str(model_url or default_model_path())
    key = (url, int(threads), str(device))
    with _LOCK:
        hit = _SESSIONS.get(key)
        if hit is not None and (not sha256 or hit[1]["sha256"] == sha256):
            return hit
        # not loaded yet, or another hash is asked for (the file may have been
        # rebuilt): read and verify it again
        providers = _providers(device)  # refuses a device this process cannot use
        data, meta = read_model(url, sha256=sha256, storage_options=storage_options, meta=meta)
        import onnxruntime as ort

        try:
            sess = ort.InferenceSession(for_session(data, device), sess_options=_session_options(
                                            threads, meta.get("session_config")),
                                        providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime cannot load model {url}: {str(exc).splitlines()[0]}")
        _check_io(sess, meta, url)
        _SESSIONS[key] = (sess, meta)
        return _SESSIONS[key]


def _check_io(sess, meta: dict, url: str) -> None:
    """Raise ModelError unless the session's input/output match the sidecar."""
    inputs = {i.name: i for i in sess.get_inputs()}
    outputs = {o.name: o for o in sess.get_outputs()}
    if meta["input_name"] not in inputs or meta["output_name"] not in outputs:
        raise ModelError(f"model {url} has inputs {sorted(inputs)} and outputs {sorted(outputs)}, "
                         f"its sidecar says {meta['input_name']!r} -> {meta['output_name']!r}")
    dim = outputs[meta["output_name"]].shape[-1]
    if isinstance(dim, int) and dim != int(meta["output_dim"]):
        raise ModelError(f"model {url} gives {dim} features, its sidecar says {meta['output_dim']}")


def clear_sessions() -> None:
    """Forget every cached session of this process."""
    with _LOCK:
        _SESSIONS.clear()
        _AUTO_BATCH.clear()


def embed(images_uint8: np.ndarray, model_url: str | None = None, *, batch_size: int = BATCH_SIZE,
          threads: int = 1, sha256: str | None = None,
          storage_options: dict | None = None, device: str = "cpu") -> np.ndarray:
    """Deep features of grey spectrogram images, in batches (:func:`run_outputs`).

    Parameters
    ----------
    images_uint8 : np.ndarray
        uint8 ``(N, H, W)`` images from :func:`emodist.features.images.spectrogram_image`.
    model_url : str, optional
        Model path or URL; default :func:`default_model_path`.
    batch_size : int
        Images per ONNX Runtime call.
    threads : int
        Threads of the (cached) session.
    sha256 : str, optional
        Expected model hash (e.g. the one recorded in a store's config).
    storage_options : dict, optional
        fsspec options for a remote model.
    device : str
        ``"cpu"``, or ``"cuda"`` / ``"cuda:N"``: I/O binding, and an automatic
        batch size that replaces ``batch_size``.

    Returns
    -------
    np.ndarray
        float32 ``(N, output_dim)``.

    Raises
    ------
    ModelError
        Model problems, or images smaller than the network accepts.
    EmodistError
        Images that are not uint8 ``(N, H, W)``.
    """
    images = np.asarray(images_uint8)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise EmodistError(f"images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
    meta = _cached(model_url, sha256, threads, storage_options, device)[1]
    min_size = int(meta.get("min_image_size", 75))
    n, h, w = images.shape
    if n and min(h, w) < min_size:
        raise ModelError(f"images of {h}x{w} are smaller than the model's minimum "
                         f"{min_size}x{min_size}")
    out = run_outputs(images, model_url, [meta["output_name"]], batch_size=batch_size,
                      threads=threads, sha256=sha256, storage_options=storage_options,
                      device=device, convert=to_network_input)
    return out[meta["output_name"]]


def run_outputs(x: np.ndarray, model_url: str | None = None, names=None, *, batch_size: int = BATCH_SIZE,
                threads: int = 1, sha256: str | None = None, storage_options: dict | None = None,
                device: str = "cpu", meta: dict | None = None,
                convert=None) -> dict[str, np.ndarray]:
    """Outputs of a model on a stack of inputs, in batches, on the cached session.

    The one way a model runs (:meth:`emodist.features.base.WorkerContext.run_model`
    calls it for every model group).

    Parameters
    ----------
    x : np.ndarray
        ``(N, ...)`` network inputs (converted to contiguous float32), or
        what ``convert`` turns into them.
    model_url : str, optional
        Model path or URL; default :func:`default_model_path`.
    names : sequence of str, optional
        Outputs to compute (default: every output of the model).
    batch_size : int
        Inputs per ONNX Runtime call on the CPU.
    threads : int
        Threads of the (cached) session.
    sha256 : str, optional
        Expected model hash.
    storage_options : dict, optional
        fsspec options for a remote model.
    device : str
        ``"cpu"``, or ``"cuda"`` / ``"cuda:N"``: the CUDA execution provider
        through I/O binding, with an automatic batch size that replaces
        ``batch_size`` (whole inputs up to :data:`AUTO_BATCH_MAX`, halved on
        out-of-memory, remembered per session and input shape).
    meta : dict, optional
        What the sidecar would say (``input_name``, ``output_name``,
        ``output_dim``, optional ``sha256``), for a model that has no sidecar
        (a model card); default: read the sidecar.
    convert : callable, optional
        ``convert(batch, out=None) -> float32 array``: turns a slice of ``x``
        into network inputs, filling ``out`` when given (the first batch's
        result is reused as the buffer of the next ones).

    Returns
    -------
    dict of str to np.ndarray
        Output name -> float32 ``(N, width)``, in the order of ``names``.

    Raises
    ------
    ModelError
        Model problems, an output name the model lacks, or a device this
        process cannot use.
    EmodistError
        A batch size below 1.
    """
    if int(batch_size) < 1:
        raise EmodistError(f"batch size must be positive, got {batch_size}")
    url = str(model_url or default_model_path())
    sess, info = _cached(url, sha256, threads, storage_options, device, meta=meta)
    widths = {o.name: o.shape[-1] for o in sess.get_outputs()}
    widths[info["output_name"]] = int(info["output_dim"])
    names = list(names or widths)
    missing = [n for n in names if n not in widths]
    if missing:
        raise ModelError(f"model {url} has no output {', '.join(missing)} "
                         f"(it has {', '.join(widths)})")
    x = np.asarray(x) if convert is not None else np.ascontiguousarray(x, dtype=np.float32)
    if len(x) == 0:
        return {n: np.zeros((0, widths[n] if isinstance(widths[n], int) else 0), np.float32)
                for n in names}
    in_name = info["input_name"]
    kind, index = parse_device(device)
    if kind == "cpu":
        outs = _run_batches(sess, in_name, names, x, int(batch_size), None, convert)
        return dict(zip(names, outs))
    key = (url, int(threads), str(device), x.shape[1:])
    done: list = []
    used = halving_batches(lambda bs: done.append(_run_batches(
        sess, in_name, names, x, bs, (kind, index), convert)),
        min(len(x), _AUTO_BATCH.get(key, AUTO_BATCH_MAX)))
    _AUTO_BATCH[key] = used
    return dict(zip(names, done[-1]))


def _run_batches(sess, in_name: str, names: list[str], x: np.ndarray, batch_size: int,
                 bound: tuple[str, int] | None, convert) -> list[np.ndarray]:
    """Every output of ``x``, batch by batch (``bound=(device_type, id)``: through I/O binding)."""
    n = len(x)
    bs = min(int(batch_size), n)
    outs: list[np.ndarray] | None = None
    buf = None
    device_inputs: dict[tuple, object] = {}
    for start in range(0, n, bs):
        stop = min(start + bs, n)
        batch = x[start:stop]
        if convert is not None and buf is None:  # the first batch is the longest:
            batch = buf = convert(batch)  # its buffer serves the next ones
        elif convert is not None:
            batch = convert(batch, out=buf[: stop - start])
        if bound is None:
            parts = sess.run(names, {in_name: batch})
        else:
            parts = run_bound(sess, in_name, names, batch, *bound, cache=device_inputs)
        if outs is None:
            outs = [np.empty((n,) + p.shape[1:], np.float32) for p in parts]
        for out, part in zip(outs, parts):
            out[start:stop] = part
    return outs
