"""A trained model as a feature group: its outputs from other groups' values.

A *head* reads no audio.  Its input is the segment's values of the groups it
was trained on (``InputSpec("groups", groups=...)``), joined in that order,
and its output is one column per model output -- a probability per class or
per tag, or a regression's value per target column -- run through the model's ONNX
graph in batches on the session cached per worker, like any model group.
The engine finishes heads after every other group of a chunk, taking their
input from the values just computed or, for groups already stored, from the
store's region (:mod:`emodist.engine.worker`).  A head with a track context
reads each segment beside the mean of its track's segments
(:func:`emodist.models.trained.track_context`): the engine joins them over
every segment of the track, the store's rows of a track that spans chunks
included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from emodist.errors import EmodistError
from emodist.features.base import FeatureGroup, InputSpec, Segment, WorkerContext, check_name
from emodist.models.trained import CONTEXTS

__all__ = ["ModelHead"]


@dataclass(frozen=True)
class ModelHead(FeatureGroup):
    """The outputs of a trained ONNX model over stored groups.

    Class or tag probabilities, or a regression's values: whichever graph
    output ``output_name`` names, one column per entry of ``classes``.

    Parameters
    ----------
    head_name : str
        The stored variable's name (the model's name).
    groups : tuple of str
        The groups whose values, joined in this order, are the model's input.
    columns : tuple of tuple of int
        For each group, the indices of its columns the model reads, in the
        model's order (empty: every column, in the group's order).
    classes : tuple of str
        The output columns (classes, tags or target columns), in the model's
        order.
    sha256 : str
        The ONNX file's SHA-256 (recorded; checked when the session loads).
    input_width : int
        Columns of the joined input.
    input_name, output_name : str
        The ONNX graph's input and the output stored (probabilities, or a
        regression's values).
    input_dtype : {"float32", "float64"}
        What the graph's input takes.
    context : {"none", "track"}
        ``"track"``: the graph takes the joined values followed by their mean
        over the segment's track (``input_width`` is twice the groups'
        columns).
    model : str
        Where the ONNX file is (not recorded: moving it changes no value).
    """

    version: ClassVar[str] = "1"
    long_name: ClassVar[str] = "class probabilities of a trained model"
    batched: ClassVar[bool] = True

    head_name: str = ""
    groups: tuple = ()
    columns: tuple = ()
    classes: tuple = ()
    sha256: str = ""
    input_width: int = 0
    input_name: str = "X"
    output_name: str = "probabilities"
    input_dtype: str = "float32"
    context: str = "none"
    model: str = field(default="", metadata={"runtime": True})

    def __post_init__(self) -> None:
        check_name(self.head_name)
        if not self.groups or not self.classes or not self.sha256:
            raise EmodistError(f"model {self.head_name!r} names no input groups, classes or "
                               "sha256")
        if self.input_dtype not in ("float32", "float64"):
            raise EmodistError(f"model {self.head_name!r}: input dtype {self.input_dtype!r} is "
                               "neither float32 nor float64")
        object.__setattr__(self, "groups", tuple(str(g) for g in self.groups))
        object.__setattr__(self, "columns", tuple(tuple(int(i) for i in c) for c in self.columns))
        if self.columns and len(self.columns) != len(self.groups):
            raise EmodistError(f"model {self.head_name!r} selects columns of "
                               f"{len(self.columns)} groups, reads {len(self.groups)}")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.context not in CONTEXTS:
            raise EmodistError(f"model {self.head_name!r}: unknown context {self.context!r}; "
                               f"use {', '.join(CONTEXTS)}")

    def params(self) -> dict:
        """The recorded fields; ``context`` only when there is one (older records lack it)."""
        out = super().params()
        if self.context == CONTEXTS[0]:
            out.pop("context")
        return out

    @property
    def name(self) -> str:
        """The model's name: its stored variable."""
        return self.head_name

    @property
    def model_sha256(self) -> str | None:
        return self.sha256

    def input(self) -> InputSpec:
        return InputSpec("groups", groups=self.groups)

    def feature_names(self) -> list[str]:
        return list(self.classes)

    def prepare(self, segment: Segment) -> np.ndarray:  # pragma: no cover - reads no audio
        raise EmodistError(f"model {self.name} reads stored groups, not audio")

    def finish(self, prepared: list[np.ndarray], context: WorkerContext) -> np.ndarray:
        """The model's outputs on the joined inputs, ``(len(prepared), len(classes))`` float32."""
        if not prepared:
            return np.empty((0, self.width), np.float32)
        x = np.stack(prepared)
        if x.shape[1] != self.input_width:
            raise EmodistError(f"model {self.name} takes {self.input_width} columns, its "
                               f"groups gave {x.shape[1]}")
        meta = {"input_name": self.input_name, "output_name": self.output_name,
                "output_dim": self.width, "sha256": self.sha256}
        dtype = np.dtype(self.input_dtype)
        convert = None if dtype == np.float32 else (lambda b, out=None: b.astype(dtype))
        return context.run_model(self.model, x, [self.output_name], self.sha256, meta=meta,
                                 convert=convert)[self.output_name]
