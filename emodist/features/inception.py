"""The Inception-v3 feature group: ImageNet embeddings of log-spectrogram pictures.

Each segment's picture is made from its shared STFT
(:func:`emodist.features.images.spectrogram_image`); the pictures of a
chunk go through the ONNX network in batches, on a session cached per worker
process (:func:`emodist.models.session.embed`), on the CPU or, with
``WorkerContext.device == "cuda"``, on the CUDA execution provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from emodist.errors import EmodistError, ModelError
from emodist.features.base import FeatureGroup, Segment, WorkerContext
from emodist.features.images import spectrogram_image

__all__ = ["InceptionV3", "embedding_names"]


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
    """

    name: ClassVar[str] = "inception_v3"
    version: ClassVar[str] = "1"
    long_name: ClassVar[str] = "ImageNet Inception-v3 embedding of the log-spectrogram picture"
    batched: ClassVar[bool] = True
    image_size: int | None = None
    image_scale: str = "linear"
    image_log_floor: float = 1e-10
    sha256: str | None = None
    dim: int | None = None
    model: str | None = field(default=None, metadata={"runtime": True}, compare=False)

    def __post_init__(self) -> None:
        if self.image_scale not in ("linear", "mel"):
            raise EmodistError(f"unknown image scale {self.image_scale!r}; use linear or mel")

    @property
    def model_sha256(self) -> str | None:
        return self.sha256

    def resolve(self, storage_options: dict | None = None) -> InceptionV3:
        """Read the model's sidecar: hash, width and picture size (refuses a mismatch)."""
        # lazy: onnx stays out of `emodist --help`, which loads the registry
        from emodist.models import session

        url = str(self.model) if self.model else session.default_model_path()
        try:
            side = session.read_sidecar(url, storage_options)
        except FileNotFoundError:
            raise ModelError(f"{url}: ONNX model or its sidecar not found") from None
        if self.sha256 and self.sha256 != side["sha256"]:
            raise ModelError(f"{url}: sha256 {side['sha256'][:12]}... is not the requested "
                             f"{self.sha256[:12]}...")
        size = int(self.image_size or side["image_size"])
        return replace(self, model=url, sha256=side["sha256"], dim=int(side["output_dim"]),
                       image_size=size)

    def feature_names(self) -> list[str]:
        if self.dim is None:
            raise ModelError("the Inception-v3 group is not resolved (model not read yet)")
        return embedding_names(self.name, int(self.dim))

    def prepare(self, segment: Segment) -> np.ndarray:
        return spectrogram_image(segment.analysis, self)

    def finish(self, prepared: list[np.ndarray], context: WorkerContext) -> np.ndarray:
        # lazy: onnx stays out of `emodist --help`, which loads the registry
        from emodist.models.session import embed

        if not prepared:
            return np.empty((0, self.width), np.float32)
        return embed(np.stack(prepared), self.model, batch_size=context.batch_size,
                     threads=context.threads, sha256=self.sha256,
                     storage_options=context.storage_options, device=context.device)
