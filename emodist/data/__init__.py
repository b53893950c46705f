"""The dataset stage: what a run reads, before any feature is computed.

- :mod:`emodist.data.catalog`: datasets (Emotify folders or manifests) as
  tracks, labels, genres and vote distributions; the audio check;
- :mod:`emodist.data.datasets`: public datasets in their published layouts
  (MTG-Jamendo mood/theme, DEAM, PMEmo) and their 0.5 s annotations;
- :mod:`emodist.data.labels`: GEMS emotions, vote profiles and label rules;
- :mod:`emodist.data.segments`: the segment plan, fixed windows planned from
  file headers;
- :mod:`emodist.data.audio`: header probes and decoding once per track
  (fsspec -> soundfile -> mono -> one resample);
- :mod:`emodist.data.demo`: generated demo data in the Emotify layout.
"""

# the published layouts register themselves with catalog.load_dataset
from emodist.data import datasets as _datasets  # noqa: F401

__all__: list[str] = []
