"""Labels of the evaluated segments: the stored rule, labels recomputed from the votes,
the order of the emotion names.

Small functions of store attributes and vote profiles; the store itself is
read by :mod:`emodist.learn.features`.
"""

from __future__ import annotations

import numpy as np

from emodist.spec import LABEL_RULES


def stored_label_rule(attrs: dict) -> str:
    """Label rule the store's labels were made with (``listener`` if unknown)."""
    if attrs.get("label_rule") in LABEL_RULES:
        return attrs["label_rule"]
    spec = attrs.get("spec")
    if isinstance(spec, dict) and spec.get("label_rule") in LABEL_RULES:
        return spec["label_rule"]
    return "listener"


def recompute_labels(votes, votes_mean, rule: str, keep) -> np.ndarray:
    """Labels from stored vote profiles under ``rule``; dropped classes become ``""``.

    Parameters
    ----------
    votes, votes_mean : array_like, shape (n, 9)
        Listener-normalised and plain-mean profiles of each segment.
    rule : {"listener", "mean"}
        Label rule (see :func:`emodist.data.catalog.dominant_emotion`).
    keep : collection of str
        Classes kept at extraction; any other label is replaced by ``""``.

    Returns
    -------
    numpy.ndarray of str
    """
    from emodist.data.catalog import dominant_emotion

    labels = dominant_emotion(votes, votes_mean, rule)
    keep = set(keep)
    return np.array([lab if lab in keep else "" for lab in labels], dtype=object)


def emotion_order(ds) -> tuple[str, ...]:
    """The store's emotion names in column order (GEMS order if it keeps none)."""
    if "emotion" in ds.coords:
        return tuple(str(e) for e in np.asarray(ds["emotion"].values))
    from emodist.store.layout import GEMS

    return tuple(GEMS)
