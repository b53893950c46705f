"""MusiCNN (Pons & Serra 2019) as an ONNX graph, built from the ``musicnn`` wheel.

The ISC-licensed wheel ``musicnn==0.1.0`` ships TensorFlow-1 checkpoints of
the taggers ``MTT_musicnn`` (MagnaTagATune) and ``MSD_musicnn`` (Million
Song Dataset).  :func:`build_musicnn` obtains the wheel (``pip download`` or
a local file), checks its SHA-256, reads the checkpoint with
:mod:`emodist.models.tfcheckpoint` (no TensorFlow), writes the inference
graph of :func:`emodist.models.musicnn_graph.build_graph` and a sidecar JSON.

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
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from emodist.data.audio import resample
from emodist.errors import DataError, ModelError
from emodist.models.build import write_model
from emodist.models.musicnn_graph import (
    INPUT_NAME,
    N_FRAMES,
    N_MELS,
    OPSET,
    OUTPUTS,
    build_graph,
    check_weights,
    random_weights,
)
from emodist.models.onnxutil import pip_download
from emodist.models.session import default_model_path as inception_path
from emodist.models.tfcheckpoint import read_checkpoint

__all__ = [
    "CHECKPOINTS", "FFT_HOP", "FFT_SIZE", "INPUT_CONTRACT", "LICENCE", "MODEL_ENV",
    "MSD_LABELS", "MTT_LABELS", "SR", "WHEEL_FILE", "WHEEL_NAME", "WHEEL_SHA256",
    "WHEEL_VERSION", "build_musicnn", "build_random_model", "default_model_path",
    "download_wheel", "extract_checkpoint", "input_patches", "load_weights", "mel_power",
    "run_model", "sidecar_extra", "tag_names",
]

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
    return pip_download(WHEEL_NAME, WHEEL_VERSION, WHEEL_FILE, dest)


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
    """A full-size musicnn ONNX model with :func:`emodist.models.musicnn_graph.random_weights` (tests; no download)."""
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
