"""The feature-group interface and the per-segment inputs a group reads.

A *feature group* is one stored variable ``NAME(segment, NAME_feature)``.
It is a frozen object holding its own parameters and declares:

* ``name``, ``version`` (bumped whenever its values change), ``long_name``;
* its input (:class:`InputSpec`): the shared STFT at the spec's rate, or
  raw mono samples at a rate of its own (the track is resampled once per
  rate, never decoded twice);
* its output: :meth:`FeatureGroup.feature_names` and :attr:`FeatureGroup.width`;
* whether it runs through a model in batches, and that model's hash.

Computing is two pure steps, so that decoding stays once per track and
model inference is batched over a whole chunk: :meth:`FeatureGroup.prepare`
turns one :class:`Segment` into the group's per-segment input (a feature
vector, an image, a stack of mel patches), and :meth:`FeatureGroup.finish`
turns the prepared inputs of every segment of a chunk into the
``(n_segments, width)`` float32 block (a stack, or batched ONNX inference).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from emodist.errors import EmodistError
from emodist.features.spectral import analyse
from emodist.spec import BATCH_SIZE

__all__ = ["INPUT_KINDS", "FeatureGroup", "InputSpec", "Segment", "WorkerContext", "check_name"]

#: Input kinds: the shared STFT (at the spec's ``sr``) or raw samples at a rate.
INPUT_KINDS = ("stft", "samples")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class InputSpec:
    """What a group reads from the one decode of a track.

    Attributes
    ----------
    kind : {"stft", "samples"}
        ``"stft"``: the segment's shared STFT (:attr:`Segment.analysis`);
        ``"samples"``: mono samples at ``sr`` (:meth:`Segment.samples`).
    sr : int or None
        Rate of ``"samples"`` input in Hz; ``None`` for the spec's rate.
    """

    kind: str = "stft"
    sr: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise EmodistError(f"unknown input kind {self.kind!r}; use stft or samples")


@dataclass(frozen=True)
class WorkerContext:
    """Speed settings a group may use while computing (never values).

    Attributes
    ----------
    threads : int
        Thread budget of the worker (ONNX Runtime intra-op threads).
    batch_size : int
        Network inputs per inference call.
    storage_options : dict or None
        fsspec options to read a remote model.
    device : str
        Where models run: ``"cpu"`` or ``"cuda"`` (``"cuda:N"``).
    """

    threads: int = 1
    batch_size: int = BATCH_SIZE
    storage_options: dict | None = field(default=None, repr=False)
    device: str = "cpu"


class Segment:
    """One segment's inputs, all cut from the one decode of its track.

    Parameters
    ----------
    tracks : dict of int to numpy.ndarray
        The decoded track, mono float32, once per sample rate.
    start_s, duration_s : float
        Where the segment lies in the track.
    sr : int
        The spec's analysis rate (that of the shared STFT).
    n_fft, hop_length : int
        The shared STFT.
    """

    def __init__(self, tracks: dict, start_s: float, duration_s: float, *, sr: int,
                 n_fft: int, hop_length: int):
        self._tracks = tracks
        self.start_s, self.duration_s = float(start_s), float(duration_s)
        self.sr, self.n_fft, self.hop_length = int(sr), int(n_fft), int(hop_length)
        self._analysis = None

    def samples(self, sr: int | None = None) -> np.ndarray:
        """Mono float32 samples of the segment at ``sr`` (default the spec's rate)."""
        # lazy: fsspec, soxr and soundfile stay out of `emodist --help`, which loads the registry
        from emodist.data.audio import cut

        rate = self.sr if sr is None else int(sr)
        return cut(self._tracks[rate], rate, self.start_s, self.duration_s)

    @property
    def analysis(self):
        """The segment's one STFT (:class:`emodist.features.spectral.Analysis`), made once."""
        if self._analysis is None:
            self._analysis = analyse(self.samples(), self.sr, self)
        return self._analysis


@dataclass(frozen=True)
class FeatureGroup:
    """Base of every feature group; subclasses are frozen dataclasses.

    Subclasses set the class attributes ``name``, ``version`` and
    ``long_name``, hold their parameters as dataclass fields, and implement
    :meth:`feature_names` and :meth:`prepare` (and :meth:`finish` when they
    batch through a model).  Fields marked ``metadata={"runtime": True}``
    (a model's location) do not define values and are not recorded.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    long_name: ClassVar[str] = ""
    #: Whether :meth:`finish` runs a model over the chunk in batches.
    batched: ClassVar[bool] = False

    # ---------------------------------------------------------------- declared
    def input(self) -> InputSpec:
        """What the group reads (default: the shared STFT)."""
        return InputSpec("stft")

    def feature_names(self) -> list[str]:  # pragma: no cover - abstract
        """Names of the ``width`` output columns."""
        raise NotImplementedError

    @property
    def width(self) -> int:
        """Number of output columns."""
        return len(self.feature_names())

    @property
    def model_sha256(self) -> str | None:
        """SHA-256 of the model the group runs (``None`` for no model)."""
        return None

    def resolve(self, storage_options: dict | None = None) -> FeatureGroup:
        """A copy with everything read from outside filled in (model hash, sizes).

        Called once on the driver before work starts, so that the recorded
        spec is complete; the default has nothing to resolve.
        """
        return self

    def params(self) -> dict[str, Any]:
        """The group's value-defining parameters, as plain values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not f.metadata.get("runtime")}

    def describe(self) -> dict[str, Any]:
        """What is recorded in the store for this group, and compared on resume."""
        inp = self.input()
        out = {"version": str(self.version), "width": int(self.width),
               "input": {"kind": inp.kind, "sr": inp.sr}, "params": self.params()}
        if self.model_sha256:
            out["model_sha256"] = self.model_sha256
        return json.loads(json.dumps(out))  # as stored: tuples become lists

    # ---------------------------------------------------------------- compute
    def prepare(self, segment: Segment) -> np.ndarray:  # pragma: no cover - abstract
        """The group's per-segment input (or its final row when not batched)."""
        raise NotImplementedError

    def finish(self, prepared: list[np.ndarray], context: WorkerContext) -> np.ndarray:
        """The ``(len(prepared), width)`` float32 block of a chunk's segments.

        The default stacks rows that :meth:`prepare` already computed.
        """
        if not prepared:
            return np.empty((0, self.width), np.float32)
        return np.stack(prepared).astype(np.float32, copy=False)


def check_name(name: str) -> str:
    """Refuse a group name that cannot be a store variable."""
    if not _NAME.match(str(name)) or name.endswith(("_status", "_feature")) or name in (
            "votes", "votes_mean", "segment", "emotion"):
        raise EmodistError(f"{name!r} cannot name a feature group (lower-case letters, digits, "
                           "'_'; not votes, segment or a *_status/*_feature name)")
    return str(name)
