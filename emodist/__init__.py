"""emodist: distributed feature extraction for music emotion recognition.

Pipeline stages, one module each: :mod:`emodist.catalog` (tracks, labels,
vote distributions), :mod:`emodist.segments` (segment plan from file
headers), :mod:`emodist.audio` (decode once), :mod:`emodist.spectral` (one
STFT per segment), :mod:`emodist.handcrafted`, :mod:`emodist.images`,
:mod:`emodist.deep` (ONNX Inception-v3), :mod:`emodist.store` (Zarr layout and
region writes), :mod:`emodist.extract` (Dask orchestration),
:mod:`emodist.evaluate` (grouped cross-validation) and :mod:`emodist.query`.
"""

from emodist._version import __version__
from emodist.config import Config
from emodist.errors import EmodistError

__all__ = ["Config", "EmodistError", "__version__", "open_store", "select", "similar"]


def __getattr__(name):
    # The query API is imported lazily so that ``import emodist`` stays light.
    if name in ("open_store", "select", "similar"):
        from emodist import query

        return getattr(query, name)
    raise AttributeError(f"module 'emodist' has no attribute {name!r}")
