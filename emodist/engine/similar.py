"""Query a store by example: new audio featurised with the store's own spec, then its neighbours.

:func:`similar_audio` takes files that are not in the store, rebuilds the
groups to compare from the store's ``feature_groups`` records (each checked
field by field against what this emodist computes, as a model's inputs are),
computes them in this process with the store's segment plan and STFT
(:func:`emodist.engine.predict.featurise_files`: no cluster), averages each
file's segments, and ranks the stored tracks by
:func:`emodist.store.similar.similar_tracks`: the same distance and the same
standardisation as a query by a stored track.  A trained model's stored
probabilities (``emodist predict``) are a space like any group: the model's
head runs on the file's input groups (the model folder is needed, and must be
the one whose probabilities the store holds).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emodist.engine.plan import first_difference
from emodist.engine.predict import (
    failure_text,
    featurise_files,
    input_group,
    model_head,
    recorded_spec,
)
from emodist.errors import EmodistError, ModelError, StoreError
from emodist.spec import ExtractionSpec, Runtime
from emodist.store import layout
from emodist.store.index import VOTE_VARIABLES, resolve_features
from emodist.store.similar import BLOCK_BYTES, default_features, similar_tracks

__all__ = ["similar_audio", "store_spec"]


def _is_head(record: dict) -> bool:
    return (record.get("input") or {}).get("kind") == "groups"


def store_spec(ds, groups, runtime: Runtime | None = None, *, model=None) -> ExtractionSpec:
    """What to compute for new audio so that it lands in the store's own space.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store.
    groups : sequence of str
        Stored groups to compute (a trained model's probabilities among them
        need ``model``).
    runtime : Runtime, optional
        Storage options of the models.
    model : TrainedModel, optional
        The model whose probabilities the store holds (``emodist predict``).

    Returns
    -------
    ExtractionSpec
        The store's segment plan and STFT; each group rebuilt from the store's
        record (a model's input groups first, then its head).

    Raises
    ------
    EmodistError
        A store without a recorded spec, a group this emodist computes
        otherwise, a model's probabilities without the model, or a model
        other than the one that wrote them.
    """
    runtime = runtime or Runtime()
    recorded = ds.attrs.get("feature_groups") or {}
    common = ds.attrs.get("spec")
    if not isinstance(common, dict):
        raise StoreError("the store does not record its segment plan (attribute spec)",
                         param="store")
    options = runtime.options("model")
    built: dict = {}

    def plain(name: str):
        if name not in built:
            if name not in recorded:
                raise StoreError(f"the store does not record how group {name!r} was made",
                                 param="features")
            try:
                built[name] = input_group(name, recorded[name], options, source="store")
            except ModelError as exc:  # the group asked for, not the store, is at fault
                raise ModelError(exc.message, param="features") from None
        return built[name]

    heads = []
    for name in groups:
        if not _is_head(recorded.get(name, {})):
            plain(name)
            continue
        if model is None:
            raise EmodistError(f"{name} holds a trained model's probabilities; give --model DIR, "
                               "the model folder that wrote them", param="model")
        if model.name != name:
            raise ModelError(f"the model at {model.path} is {model.name!r}, not {name!r}",
                             param="model")
        head = model_head(model, [plain(i.group) for i in model.inputs])
        diff = first_difference(recorded[name], head.describe())
        if diff:
            raise ModelError(f"the store's {name} was written by a model with {diff[0]}="
                             f"{diff[1]!r}; the model at {model.path} has {diff[2]!r}",
                             param="model")
        heads.append(head)
    return recorded_spec(common, tuple(built.values()) + tuple(heads))


def similar_audio(ds, audio, *, k: int = 10, features=None, metric: str = "cosine",
                  standardize: bool | None = None, labels=None, genres=None, model=None,
                  runtime: Runtime | None = None,
                  block_bytes: int = BLOCK_BYTES) -> tuple[pd.DataFrame, list]:
    """The stored tracks nearest to audio files that need not be in the store.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store.
    audio : str or sequence of str
        Audio files (or anything :func:`emodist.data.catalog.load_audio`
        reads: a folder, a manifest); every track found is one query.
    k, metric, standardize, labels, genres, block_bytes
        As in :func:`emodist.store.similar.similar_tracks`.
    features : str or sequence of str, optional
        Stored groups, ``+``-joined groups, column names or patterns; a
        trained model's name compares in its probability space.  Default
        :func:`emodist.store.similar.default_features`.
    model : TrainedModel, optional
        The model whose probabilities ``features`` names.
    runtime : Runtime, optional
        Storage options, device, batch size and threads of the computation.

    Returns
    -------
    neighbours : pandas.DataFrame
        ``query`` (the file), then the columns of
        :func:`~emodist.store.similar.similar_tracks`; ``k`` rows per file.
    failures : list of dict
        Files that could not be decoded or computed (``path``, ``error``); the
        other files are answered.

    Raises
    ------
    EmodistError
        A missing file, an unknown group, votes (not computed from audio),
        or no file computed at all (naming the first reasons).
    """
    runtime = runtime or Runtime()
    audio = [audio] if isinstance(audio, str) else [str(a) for a in audio]
    if not audio:
        raise EmodistError("give at least one audio file", param="audio")
    index = ds.emodist.index
    if features is None:
        features = default_features(ds)
    try:
        chosen = resolve_features(index, features)
    except EmodistError as exc:
        raise EmodistError(exc.message, param="features") from None
    votes = [v for v in chosen if v in VOTE_VARIABLES]
    if votes:
        raise EmodistError(f"{votes[0]} are listeners' answers, not computed from audio; compare "
                           f"by a group ({', '.join(index.groups)})", param="features")
    spec = store_spec(ds, list(chosen), runtime, model=model)
    for var in chosen:
        if spec.group(var).feature_names() != index.feature_names[var]:
            raise StoreError(f"the store's {var} columns are not those this emodist computes",
                             param="features")
    frames, failures = [], []
    for item in audio:
        try:
            got = featurise_files(item, spec, runtime, param="audio", empty_ok=True)
        except EmodistError as exc:
            raise EmodistError(exc.message, param=exc.param or "audio") from None
        failures += got.failures
        if len(got.table) == 0:
            continue
        done = np.ones(len(got.table), bool)
        for var in chosen:
            done &= got.status[var] == layout.STATUS_DONE
        table = got.table.reset_index(drop=True)
        for (track, path), rows in table[done].groupby(["track_id", "path"], sort=False).groups.items():
            rows = np.asarray(rows)
            vector = np.hstack([got.values[var][rows][:, cols] for var, cols in chosen.items()])
            found = similar_tracks(ds, vector=vector.astype(np.float64).mean(axis=0), k=k,
                                   features=features, metric=metric, standardize=standardize,
                                   labels=labels, genres=genres, block_bytes=block_bytes)
            found.insert(0, "query", str(path))
            frames.append(found)
    if not frames:
        reasons = "; ".join(failure_text(f["path"], f["error"]) for f in failures[:3])
        raise EmodistError(f"no audio computed ({reasons or 'no segment'})", param="audio")
    return pd.concat(frames, ignore_index=True), failures
