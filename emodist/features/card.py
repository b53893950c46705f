"""Bring-your-own ONNX embedding models: a TOML model card becomes a feature group.

A card describes a user's ONNX model well enough to run it on segments, with
no code change (``emodist extract DATA --store S --features mymodel
--model-card mymodel.toml``)::

    name = "mymodel"              # the group (and store variable) name
    licence = "MIT"
    model = "mymodel.onnx"        # inside the card's folder (or an absolute path / URL)
    sha256 = "..."                # the model's SHA-256 (sha256sum mymodel.onnx): checked
    description = "..."           # optional

    [input]
    kind = "logmel"               # or "samples"
    sr = 16000                    # the segment is resampled once to this rate
    n_fft = 512                   # logmel only
    hop = 256                     # logmel only
    n_mels = 96                   # logmel only
    scale = "log10_10000x_plus_1" # logmel only: or "db", "linear"
    patch_frames = 187            # logmel: network input (N, patch_frames, n_mels)
    # patch_samples = 48000       # samples: network input (N, patch_samples)
    # name = "patches"            # the ONNX input (default: the model's first input)

    [[outputs]]                   # one table per output used, in column order
    name = "embedding"
    width = 128

The log-mel spectrogram is librosa's (power 2, Slaney mel, centred, zero
padding), scaled by ``scale`` (``log10(10000 x + 1)``, ``10 log10(max(x,
1e-10))`` or as is); a segment is cut into consecutive non-overlapping
patches, the partial last one dropped.  Each segment keeps the mean over its
patches of every output, in card order; columns are ``<name>_<output>_<i>``.

A card file must give the model's ``sha256`` (:func:`load_card`), checked
on the driver before anything is written and recorded in the store; a
relative ``model`` must stay inside the card's folder (``../x.onnx`` is
refused; an absolute path or a URL is taken as given).  The model runs
through the worker's model runner
(:meth:`emodist.features.base.WorkerContext.run_model`), on ``--device``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from emodist.errors import DataError, EmodistError, ModelError
from emodist.features.base import (
    Bound,
    FeatureGroup,
    InputSpec,
    Segment,
    WorkerContext,
    check_name,
    patch_means,
)
from emodist.features.registry import register

#: Scalings of the mel power spectrogram a card may ask for.
__all__ = ["INPUT_KEYS", "SCALES", "CardGroup", "ModelCard", "load_card", "logmel_patches",
           "parse_card", "register_card"]

SCALES = ("log10_10000x_plus_1", "db", "linear")
#: Keys of an ``[input]`` table, per kind.
INPUT_KEYS = {"logmel": ("sr", "n_fft", "hop", "n_mels", "scale", "patch_frames"),
              "samples": ("sr", "patch_samples")}


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelCard:
    """A parsed, checked model card (see the module docstring).

    Attributes
    ----------
    name : str
        Group name (the store variable and the ``--features`` word).
    model : str
        Model location (made absolute against the card's folder, which a
        relative location may not leave).
    input : tuple of (str, value)
        The ``[input]`` table: ``kind``, its keys, optional ``name``.
    outputs : tuple of (str, int)
        Output names and widths, in column order.
    sha256, licence, description : str or None
    """

    name: str
    model: str
    input: tuple
    outputs: tuple
    sha256: str | None = None
    licence: str | None = None
    description: str | None = None

    def get(self, key: str, default=None):
        """A value of the ``[input]`` table."""
        return dict(self.input).get(key, default)

    @property
    def width(self) -> int:
        """Total columns: the sum of the output widths."""
        return sum(w for _, w in self.outputs)


def _fail(path, msg: str):
    raise EmodistError(f"model card {path}: {msg}", param="model_card")


def parse_card(data: dict, base: str = ".", path: str = "<card>") -> ModelCard:
    """Check a card's TOML table and make a :class:`ModelCard`.

    Parameters
    ----------
    data : dict
        The parsed TOML.
    base : str
        Folder a relative ``model`` is resolved against (the card's folder).
    path : str
        The card's location, for messages.

    Raises
    ------
    EmodistError
        A missing or invalid key (one line naming the card and the key).
    """
    try:
        name = check_name(str(data["name"]))
        model = str(data["model"])
        inp = dict(data["input"])
        outs = list(data["outputs"])
    except KeyError as exc:
        _fail(path, f"lacks {exc.args[0]!r} (needs name, model, [input] and [[outputs]])")
    except EmodistError as exc:
        _fail(path, exc.message)
    kind = inp.get("kind")
    if kind not in INPUT_KEYS:
        _fail(path, f"input kind {kind!r} is not one of {', '.join(INPUT_KEYS)}")
    for key in INPUT_KEYS[kind]:
        if key not in inp:
            _fail(path, f"[input] of kind {kind} lacks {key!r}")
        if key != "scale" and (not isinstance(inp[key], int) or inp[key] < 1):
            _fail(path, f"[input] {key} must be a positive integer, got {inp[key]!r}")
    if kind == "logmel" and inp["scale"] not in SCALES:
        _fail(path, f"[input] scale {inp['scale']!r} is not one of {', '.join(SCALES)}")
    extra = set(inp) - set(INPUT_KEYS[kind]) - {"kind", "name"}
    if extra:
        _fail(path, f"[input] has unknown keys {', '.join(sorted(extra))}")
    outputs = []
    for o in outs:
        try:
            oname, width = str(o["name"]), o["width"]
        except (KeyError, TypeError):
            _fail(path, "every [[outputs]] needs name and width")
        if not isinstance(width, int) or width < 1:
            _fail(path, f"output {oname} width must be a positive integer, got {width!r}")
        outputs.append((oname, width))
    if not outputs or len({n for n, _ in outputs}) != len(outputs):
        _fail(path, "[[outputs]] must name at least one output, each once")
    if "://" not in model and not os.path.isabs(model):
        folder = os.path.abspath(base)
        model = os.path.abspath(os.path.join(folder, model))
        if os.path.commonpath([folder, model]) != folder:
            _fail(path, f"model {data['model']!r} leaves the card's folder (give a path inside "
                  "it, or an absolute path or URL)")
    sha = data.get("sha256")
    if sha is not None and not _SHA256.match(str(sha)):
        _fail(path, f"sha256 {sha!r} is not 64 lower-case hex digits")
    order = ("kind",) + INPUT_KEYS[kind] + (("name",) if "name" in inp else ())
    return ModelCard(name=name, model=model, input=tuple((k, inp[k]) for k in order),
                     outputs=tuple(outputs), sha256=data.get("sha256"),
                     licence=data.get("licence"), description=data.get("description"))


def load_card(path: str | os.PathLike) -> ModelCard:
    """Read and check a TOML model card (a local file); it must give the model's ``sha256``.

    Raises
    ------
    EmodistError
        A missing or unreadable card, a missing ``sha256``, or any problem
        :func:`parse_card` finds (one line naming the card).
    """
    import tomllib

    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        _fail(path, "not found")
    except tomllib.TOMLDecodeError as exc:
        _fail(path, f"not valid TOML ({exc})")
    card = parse_card(data, os.path.dirname(os.path.abspath(path)), path)
    if card.sha256 is None:
        _fail(path, "lacks 'sha256', the model's SHA-256 (sha256sum MODEL.onnx), which is "
              "checked before the model is used")
    return card


def register_card(path: str | os.PathLike) -> str:
    """Load a card and register its group under the card's name; the name."""
    card = load_card(path)
    register(card.name, Bound(CardGroup, card=card))
    return card.name


def logmel_patches(y: np.ndarray, card: ModelCard) -> np.ndarray:
    """``(n, patch_frames, n_mels)`` float32 scaled log-mel patches of a clip at the card's rate."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=np.asarray(y, np.float32), sr=card.get("sr"), n_fft=card.get("n_fft"),
        hop_length=card.get("hop"), n_mels=card.get("n_mels"), center=True,
        pad_mode="constant", power=2.0).T
    scale = card.get("scale")
    if scale == "log10_10000x_plus_1":
        mel = np.log10(10000.0 * mel + 1.0)
    elif scale == "db":
        mel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return _patch(mel, card.get("patch_frames"))


def _patch(x: np.ndarray, size: int) -> np.ndarray:
    n = len(x) // size
    return np.ascontiguousarray(x[: n * size].reshape((n, size) + x.shape[1:]), np.float32)


@dataclass(frozen=True)
class CardGroup(FeatureGroup):
    """The feature group of a model card: per segment, output means over its patches.

    Parameters
    ----------
    card : ModelCard
        The card; its name is the group's name.  Recorded in the store
        (without the model's location), with the model's SHA-256.
    sha256 : str or None
        The model's hash: the card's, else computed by :meth:`resolve`.
    """

    version: ClassVar[str] = "1"
    long_name: ClassVar[str] = "ONNX embedding model described by a model card"
    batched: ClassVar[bool] = True
    card: ModelCard = None
    sha256: str | None = None

    @property
    def name(self) -> str:
        """The card's name."""
        return self.card.name

    @property
    def model_sha256(self) -> str | None:
        return self.sha256 or self.card.sha256

    def input(self) -> InputSpec:
        return InputSpec("samples", int(self.card.get("sr")))

    def params(self) -> dict:
        c = self.card
        return {"input": dict(c.input), "outputs": [list(o) for o in c.outputs],
                "licence": c.licence, "card_sha256": c.sha256}

    def _meta(self) -> dict:
        first, width = self.card.outputs[0]
        return {"sha256": self.model_sha256, "input_name": self.card.get("name"),
                "output_name": first, "output_dim": width}

    def resolve(self, storage_options: dict | None = None) -> CardGroup:
        """Hash the model (checking the card's sha256) and check its input and outputs."""
        import onnxruntime as ort

        from emodist.models import session  # lazy: keeps onnx out of `emodist --help`

        url = self.card.model
        data, meta = session.read_model(url, storage_options=storage_options, meta={})
        session.check_sha256(url, meta["sha256"], self.card.sha256, source="the card's",
                             param="model_card")
        try:
            sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime cannot load model {url}: {str(exc).splitlines()[0]}")
        inputs = [i.name for i in sess.get_inputs()]
        card = self.card
        if card.get("name") is None:  # default: the model's first input
            card = replace(card, input=card.input + (("name", inputs[0]),))
        elif card.get("name") not in inputs:
            raise ModelError(f"{url}: no input {card.get('name')!r} (it has {', '.join(inputs)})")
        widths = {o.name: o.shape[-1] for o in sess.get_outputs()}
        for oname, width in card.outputs:
            if oname not in widths:
                raise ModelError(f"{url}: no output {oname!r} (it has {', '.join(widths)})")
            if isinstance(widths[oname], int) and widths[oname] != width:
                raise ModelError(f"{url}: output {oname} has width {widths[oname]}, "
                                 f"the card says {width}")
        return replace(self, card=card, sha256=meta["sha256"])

    def feature_names(self) -> list[str]:
        return [f"{self.name}_{o}_{i:0{len(str(w - 1))}d}" for o, w in self.card.outputs
                for i in range(w)]

    def prepare(self, segment: Segment) -> np.ndarray:
        """The segment's network inputs: ``(n, patch_frames, n_mels)`` or ``(n, patch_samples)``."""
        y = segment.samples(int(self.card.get("sr")))
        if self.card.get("kind") == "logmel":
            patches = logmel_patches(y, self.card)
        else:
            patches = _patch(np.asarray(y, np.float32), self.card.get("patch_samples"))
        if len(patches) == 0:
            raise DataError(f"segment of {segment.duration_s:g} s is shorter than one patch "
                            f"of model {self.name}")
        return patches

    def finish(self, prepared: list[np.ndarray], context: WorkerContext) -> np.ndarray:
        names = [o for o, _ in self.card.outputs]
        return patch_means(prepared, names,
                           lambda x: context.run_model(self.card.model, x, names,
                                                       self.model_sha256, meta=self._meta()),
                           self.width)
