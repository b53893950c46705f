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
``(n_segments, width)`` float32 block (a stack, or batched ONNX inference
through :meth:`WorkerContext.run_model`, the one model runner, which honours
the worker's device, threads and batch size).

A group takes the command-line options it declares in
:attr:`FeatureGroup.options` (option -> field), and only those
(:func:`emodist.features.make_group`).
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

__all__ = ["INPUT_KINDS", "Bound", "FeatureGroup", "InputSpec", "Segment", "WorkerContext",
           "check_name", "patch_means"]

#: Input kinds: the shared STFT (at the spec's ``sr``), raw samples at a rate, or the
#: stored values of other groups (a model head: a classifier over embeddings).
INPUT_KINDS = ("stft", "samples", "groups")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class InputSpec:
    """What a group reads from the one decode of a track.

    Attributes
    ----------
    kind : {"stft", "samples", "groups"}
        ``"stft"``: the segment's shared STFT (:attr:`Segment.analysis`);
        ``"samples"``: mono samples at ``sr`` (:meth:`Segment.samples`);
        ``"groups"``: the segment's values of the groups named in ``groups``,
        joined in that order (no audio is read).
    sr : int or None
        Rate of ``"samples"`` input in Hz; ``None`` for the spec's rate.
    groups : tuple of str
        The groups a ``"groups"`` input reads.
    """

    kind: str = "stft"
    sr: int | None = None
    groups: tuple = ()

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise EmodistError(f"unknown input kind {self.kind!r}; use {', '.join(INPUT_KINDS)}")
        if (self.kind == "groups") != bool(self.groups):
            raise EmodistError("an input of kind 'groups' names the groups it reads, "
                               "and only it does")

    @property
    def reads_audio(self) -> bool:
        """Whether the group reads the decoded track (not other groups' values)."""
        return self.kind != "groups"

    def describe(self) -> dict[str, Any]:
        """What is recorded of the input (``groups`` only for a ``"groups"`` input)."""
        out = {"kind": self.kind, "sr": self.sr}
        if self.groups:
            out["groups"] = list(self.groups)
        return out


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

    def run_model(self, url: str, inputs: np.ndarray, outputs, sha256: str | None, *,
                  meta: dict | None = None, convert=None) -> dict[str, np.ndarray]:
        """Run a model over a chunk's network inputs, in batches, on this worker's session.

        The one model runner of the feature groups: the session is cached per
        worker process (:mod:`emodist.models.session`), runs on
        :attr:`device` (the CPU, or the CUDA execution provider with I/O
        binding and an automatic batch size) with :attr:`threads` threads,
        :attr:`batch_size` inputs per call on the CPU.

        Parameters
        ----------
        url : str
            The model's path or URL (read with :attr:`storage_options`).
        inputs : np.ndarray
            ``(N, ...)`` network inputs, or what ``convert`` turns into them.
        outputs : sequence of str
            The outputs to compute, in order.
        sha256 : str or None
            The model's expected hash (the one recorded for the group).
        meta : dict, optional
            What a sidecar would say, for a model without one (a model card).
        convert : callable, optional
            ``convert(batch, out=None)``: a batch of ``inputs`` -> float32
            network inputs (Inception-v3's pictures).

        Returns
        -------
        dict of str to np.ndarray
            Output name -> float32 ``(N, width)``.

        Raises
        ------
        ModelError
            Model problems, or a device this process cannot use (one line,
            ``--device``).
        """
        from emodist.models import session  # lazy: keeps onnx out of `emodist --help`
        return session.run_outputs(inputs, url, outputs, batch_size=self.batch_size,
                                   threads=self.threads, sha256=sha256,
                                   storage_options=self.storage_options, device=self.device,
                                   meta=meta, convert=convert)


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
        self._shared: dict = {}

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

    def shared(self, key, make):
        """An input derived from the segment, made once and shared by the groups asking for ``key``.

        ``make(segment)`` runs on the first request; the array it returns is
        made read-only and given to every group that asks for the same
        ``key`` (both MusiCNN taggers read the same patches).
        """
        value = self._shared.get(key)
        if value is None:
            value = make(self)
            value.flags.writeable = False
            self._shared[key] = value
        return value


@dataclass(frozen=True)
class FeatureGroup:
    """Base of every feature group; subclasses are frozen dataclasses.

    Subclasses set the class attributes ``name``, ``version``,
    ``long_name`` and ``options`` (the command-line options they take, option
    -> field), hold their parameters as dataclass fields, and implement
    :meth:`feature_names` and :meth:`prepare` (and :meth:`finish` when they
    batch through a model).  Fields marked ``metadata={"runtime": True}``
    (a model's location) do not define values and are not recorded.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    long_name: ClassVar[str] = ""
    #: Whether :meth:`finish` runs a model over the chunk in batches.
    batched: ClassVar[bool] = False
    #: The options the group takes (:func:`emodist.features.make_group`):
    #: option name (a command-line flag's ``dest``) -> the field it sets.
    options: ClassVar[dict[str, str]] = {}

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
        out = {"version": str(self.version), "width": int(self.width),
               "input": self.input().describe(), "params": self.params()}
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


def patch_means(prepared: list[np.ndarray], outputs, run, width: int) -> np.ndarray:
    """Run every patch of a chunk at once, then average each segment's patches.

    Parameters
    ----------
    prepared : list of np.ndarray
        Per segment, its ``(n_i, ...)`` network inputs (``n_i >= 1``).
    outputs : sequence of str
        Output names, in column order.
    run : callable
        ``run(x) -> {output: (N, w)}`` on the ``(sum n_i, ...)`` stack (batched).
    width : int
        Total columns, for the empty chunk.

    Returns
    -------
    np.ndarray
        float32 ``(len(prepared), width)``: per segment, the mean over its
        patches of each output, outputs side by side.
    """
    if not prepared:
        return np.empty((0, width), np.float32)
    counts = np.array([len(p) for p in prepared])
    out = run(np.concatenate(prepared))
    block = np.concatenate([np.asarray(out[o], np.float64) for o in outputs], axis=1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (np.add.reduceat(block, starts, axis=0) / counts[:, None]).astype(np.float32)


class Bound:
    """A group factory with some fields fixed; takes the other options its class declares.

    ``Bound(MusiCNN, variant="msd")(**fields)`` makes ``MusiCNN(variant="msd",
    **fields)``; :attr:`options` are the class's own, less those setting a
    fixed field.
    """

    def __init__(self, cls, **fixed):
        self.cls, self.fixed = cls, fixed

    @property
    def options(self) -> dict[str, str]:
        """Option name -> field, as the class declares them, less the fixed fields."""
        return {k: f for k, f in self.cls.options.items() if f not in self.fixed}

    def __call__(self, **fields) -> FeatureGroup:
        return self.cls(**self.fixed, **fields)

    def __repr__(self) -> str:
        return f"Bound({self.cls.__name__}, {self.fixed})"
