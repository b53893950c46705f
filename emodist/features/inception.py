"""The Inception-v3 feature group: ImageNet embeddings of log-spectrogram pictures.

Each segment's picture is made from its shared STFT
(:func:`emodist.features.images.spectrogram_image`); the pictures of a
chunk go through the ONNX network in batches through the worker's model
runner (:meth:`emodist.features.base.WorkerContext.run_model`), on the CPU
or, with ``--device cuda``, on the CUDA execution provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from emodist.errors import EmodistError, ModelError
from emodist.features.base import FeatureGroup, Segment, WorkerContext
from emodist.features.images import spectrogram_image

__all__ = ["IMAGE_SCALES", "InceptionV3", "embedding_names"]

#: Frequency axes of the spectrogram picture: linear bins or librosa's mel bands.
IMAGE_SCALES = ("linear", "mel")


def embedding_names(prefix: str, dim: int) -> list[str]:
    """Column names ``PREFIX_0000`` ... of a ``dim``-wide embedding."""
    width = max(4, len(str(dim - 1)))
    return [f"{prefix}_{i:0{width}d}" for i in range(dim)]


@dataclass(frozen=True)
class InceptionV3(FeatureGroup):
    """2048 pooled Inception-v3 features per segment.

    Parameters
    ----------
    image_size : int or None
        Side of the square picture; ``None`` takes the model's own.
    image_scale : {"linear", "mel"}
        Frequency axis of the picture.
    image_log_floor : float
        Floor added before ``log10`` of the power spectrogram.
    sha256 : str or None
        Expected model hash; filled from the model's sidecar by :meth:`resolve`.
    dim : int or None
        Embedding width, from the sidecar.
    model : str or None
        Model location (default :func:`emodist.models.session.default_model_path`);
        a location, so not recorded.
    output : str or None
        The model's output, from the sidecar (not recorded: ``dim`` and
        ``sha256`` define the values).
    """

    name: ClassVar[str] = "inception_v3"
    version: ClassVar[str] = "1"
    long_name: ClassVar[str] = "ImageNet Inception-v3 embedding of the log-spectrogram picture"
    batched: ClassVar[bool] = True
    options: ClassVar[dict[str, str]] = {"image_scale": "image_scale", "model": "model"}
    image_size: int | None = None
    image_scale: str = "linear"
    image_log_floor: float = 1e-10
    sha256: str | None = None
    dim: int | None = None
    model: str | None = field(default=None, metadata={"runtime": True}, compare=False)
    output: str | None = field(default=None, metadata={"runtime": True}, compare=False,
                               repr=False)

    def __post_init__(self) -> None:
        if self.image_scale not in IMAGE_SCALES:
            raise EmodistError(f"unknown image scale {self.image_scale!r}; use "
                               f"{' or '.join(IMAGE_SCALES)}")

    @property
    def model_sha256(self) -> str | None:
        return self.sha256

    def resolve(self, storage_options: dict | None = None) -> InceptionV3:
        """Read the model and its sidecar: hash, width and picture size.

        The model's bytes are hashed here, on the driver before anything is
        written: a model that is not the one its sidecar (or ``sha256``)
        names is refused in one line.
        """
        from emodist.models import session  # lazy: keeps onnx out of `emodist --help`
        url = str(self.model) if self.model else session.default_model_path()
        _, side = session.read_model(url, sha256=self.sha256, storage_options=storage_options,
                                     param="model")
        size = int(self.image_size or side["image_size"])
        least = int(side.get("min_image_size", 75))
        if size < least:
            raise ModelError(f"pictures of {size}x{size} are smaller than the model's minimum "
                             f"{least}x{least} ({url})")
        return replace(self, model=url, sha256=side["sha256"], dim=int(side["output_dim"]),
                       image_size=size, output=side["output_name"])

    def feature_names(self) -> list[str]:
        if self.dim is None:
            raise ModelError("the Inception-v3 group is not resolved (model not read yet)")
        return embedding_names(self.name, int(self.dim))

    def prepare(self, segment: Segment) -> np.ndarray:
        return spectrogram_image(segment.analysis, self)

    def finish(self, prepared: list[np.ndarray], context: WorkerContext) -> np.ndarray:
        if not prepared:
            return np.empty((0, self.width), np.float32)
        from emodist.models.build import to_network_input  # lazy: keeps onnx out of --help

        out = context.run_model(self.model, np.stack(prepared), [self.output], self.sha256,
                                convert=to_network_input)
        return out[self.output]
