"""What defines the stored values (:class:`ExtractionSpec`) and how a run goes (:class:`Runtime`).

The spec is frozen and fully resolved before any work starts: the segment
plan, the one STFT shared by the spectral groups, the label rule and the
feature groups (each with its own version, parameters and model hash).  It
is recorded in the store as native Zarr attributes
(:meth:`ExtractionSpec.to_attrs`), and a rerun on an existing store compares
it field by field, per group.  Everything that changes speed, not values
(cluster, batch size, storage options, progress), lives in :class:`Runtime`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from emodist.errors import EmodistError

#: Label rules: argmax of the listener-normalised or of the plain-mean profile.
LABEL_RULES = ("listener", "mean")

#: Network inputs per ONNX call on the CPU.  Inception-v3 runs as many images
#: per CPU-second at 8 as at 32 (benchmarks/results/deep.json, fp32 and int8) and
#: gives the same bits, while ONNX Runtime's memory for a batch of 32 fp32 images
#: is about four times larger (a one-off ~1.1 GiB and ~300,000 page faults per
#: worker, docs/performance.md).  A GPU chooses its own batch size.
BATCH_SIZE = 8
#: Segments computed at once when files are answered in one process (no store):
#: whole tracks, so its memory holds one such chunk's inputs whatever the number of files.
FILE_CHUNK_SEGMENTS = 32

#: Where the segment plan's file headers are read (see :mod:`emodist.engine.planning`).
PLAN_SITES = ("auto", "driver", "workers")
#: ``plan_on="auto"`` plans on the workers above this many tracks (or when remote).
PLAN_ON_WORKERS_TRACKS = 5000

__all__ = ["BATCH_SIZE", "FILE_CHUNK_SEGMENTS", "LABEL_RULES", "PLAN_ON_WORKERS_TRACKS",
           "PLAN_SITES", "ExtractionSpec", "Runtime"]


@dataclass(frozen=True)
class ExtractionSpec:
    """Every parameter that changes what lands in a feature store.

    Parameters
    ----------
    groups : tuple of FeatureGroup
        The feature groups to extract (see :mod:`emodist.features`), each a
        frozen object holding its own parameters.
    sr : int
        Analysis sample rate of the shared STFT in Hz.
    segment_seconds, hop_seconds : float
        Window length and hop of the segment plan (hop < length overlaps).
        ``hop_seconds=None`` means the segment length.
    min_last_seconds : float or None
        Shortest allowed last piece of a track; ``None`` means a full
        segment (a partial last piece is dropped, as in the reference study).
    n_fft, hop_length : int
        The one STFT computed per segment, shared by every group that asks
        for it.
    label_rule : {"listener", "mean"}
        How the dominant emotion is chosen.
    min_class_tracks : int or None
        Classes with fewer tracks are dropped; ``None`` uses ``min_class_share``.
    min_class_share : float
        Classes holding less than this share of the tracks are dropped (0.02
        drops 'amazement' on Emotify, as the study did).
    """

    groups: tuple = ()
    sr: int = 22050
    segment_seconds: float = 15.0
    hop_seconds: float | None = None
    min_last_seconds: float | None = None
    n_fft: int = 2048
    hop_length: int = 512
    label_rule: str = "listener"
    min_class_tracks: int | None = None
    min_class_share: float = 0.02

    def __post_init__(self) -> None:
        hop = self.segment_seconds if self.hop_seconds is None else self.hop_seconds
        object.__setattr__(self, "hop_seconds", float(hop))
        if self.segment_seconds <= 0 or self.hop_seconds <= 0:
            raise EmodistError("segment and hop lengths must be positive seconds")
        if self.label_rule not in LABEL_RULES:
            raise EmodistError(f"unknown label rule {self.label_rule!r}; use listener or mean")
        object.__setattr__(self, "groups", tuple(self.groups))
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise EmodistError(f"feature group named twice in {', '.join(names)}")

    @property
    def min_last(self) -> float:
        """Shortest last piece in seconds (``segment_seconds`` if unset)."""
        return self.segment_seconds if self.min_last_seconds is None else self.min_last_seconds

    @property
    def group_names(self) -> tuple[str, ...]:
        """Names of the groups, in order."""
        return tuple(g.name for g in self.groups)

    def group(self, name: str):
        """The group called ``name``."""
        for g in self.groups:
            if g.name == name:
                return g
        raise EmodistError(f"no feature group {name!r} in this extraction")

    def common(self) -> dict[str, Any]:
        """The fields shared by every group (plan, STFT, labels), as plain values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "groups"}

    def to_attrs(self) -> dict[str, Any]:
        """Native store attributes: ``spec`` (common fields) and ``feature_groups``."""
        return {"spec": self.common(),
                "feature_groups": {g.name: g.describe() for g in self.groups}}

    def replace(self, **changes: Any) -> ExtractionSpec:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Runtime:
    """How a run goes; nothing here changes a stored value.

    Parameters
    ----------
    scheduler, scheduler_file : str, optional
        Connect to this Dask scheduler instead of starting a LocalCluster.
    n_workers, threads_per_worker : int, optional
        Size of the LocalCluster started when no scheduler is given.
    memory_limit : str, optional
        Memory limit per LocalCluster worker.
    storage : dict, optional
        Storage options per location: ``{"dataset": {...}, "store": {...},
        "model": {...}}`` (credentials, endpoints), never written anywhere.
    batch_size : int
        Network inputs per ONNX inference call.
    chunk : int, optional
        Segments per chunk of a new store (default: sized from the widest group).
    max_in_flight : int, optional
        Cap on chunk tasks in flight (default 2 per worker thread).
    progress : bool
        Show the progress bar.
    client : distributed.Client, optional
        Use this client; nothing is started.
    device : str
        Where model groups run: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"``.
    resources : dict, optional
        Dask worker resources every chunk task (its CPU stage) needs.
    model_resources : dict, optional
        Dask worker resources of the model stage (e.g. ``{"GPU": 1}``): a
        chunk is then split into a CPU task and a model task.
    plan_on : {"auto", "driver", "workers"}
        Where the file headers of the segment plan are read: ``auto`` reads
        them on the workers when the dataset is remote or large (see
        :func:`emodist.engine.planning.plan_site`), on the driver otherwise.
    """

    scheduler: str | None = None
    scheduler_file: str | None = None
    n_workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | None = None
    storage: dict = field(default_factory=dict, repr=False)
    batch_size: int = BATCH_SIZE
    chunk: int | None = None
    max_in_flight: int | None = None
    progress: bool = True
    client: Any = field(default=None, repr=False, compare=False)
    device: str = "cpu"
    resources: dict | None = None
    model_resources: dict | None = None
    plan_on: str = "auto"

    def __post_init__(self) -> None:
        if self.plan_on not in PLAN_SITES:
            raise EmodistError(f"unknown planning site {self.plan_on!r}; use "
                               f"{', '.join(PLAN_SITES[:-1])} or {PLAN_SITES[-1]}",
                               param="plan_on")

    def options(self, location: str) -> dict | None:
        """Storage options of ``location`` (``dataset``, ``store`` or ``model``)."""
        opts = self.storage.get(location)
        return dict(opts) if opts else None

    def replace(self, **changes: Any) -> Runtime:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)
