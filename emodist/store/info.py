"""What a store holds: :func:`info`, a plain-JSON summary."""

from __future__ import annotations

import numpy as np
import xarray as xr

from emodist.store import layout
from emodist.store.handle import as_store

__all__ = ["info"]


def _size_on_disk(url, storage_options: dict | None) -> int | None:
    if not url:
        return None
    try:
        h = as_store(url, storage_options, read_only=True)
        return int(h.fs.du(h.root, total=True))
    except Exception:  # noqa: BLE001 - size is informative only; a listing may be refused
        return None


def _chunking(ds: xr.Dataset) -> dict:
    out = {}
    for name, var in ds.data_vars.items():
        enc = var.encoding
        comp = enc.get("compressors") or ()
        out[name] = {
            "shape": list(var.shape),
            "dtype": str(var.dtype),
            "chunks": list(enc.get("chunks") or getattr(var.data, "chunksize", var.shape)),
            "shards": list(enc["shards"]) if enc.get("shards") else None,
            "compressors": [type(c).__name__ for c in comp],
        }
    return out


def info(ds) -> dict:
    """What a store holds, how complete it is and how it is laid out.

    Parameters
    ----------
    ds : xarray.Dataset
        An opened store (also ``ds.emodist.info()``).

    Returns
    -------
    dict
        Plain-JSON summary: ``store``, ``segments``, ``tracks``,
        ``completeness`` (done / pending / failed counts per group),
        ``complete`` (segments done in every group), ``failures``,
        ``classes`` and ``genres`` (tracks and segments each), ``features``
        (columns per variable), ``spec``, ``feature_groups``, ``provenance``,
        ``size_bytes`` and ``chunking``.
    """
    acc = ds.emodist
    index = acc.index
    attrs = dict(ds.attrs)

    def counts(name: str) -> dict:
        cats, codes = index.categories[name], index.codes[name]
        seg = np.bincount(codes, minlength=len(cats))
        pairs = np.unique(np.stack([codes, index.codes["track_id"]]), axis=1)
        trk = np.bincount(pairs[0], minlength=len(cats))
        order = np.argsort(-seg, kind="stable")
        return {str(cats[i]): {"tracks": int(trk[i]), "segments": int(seg[i])} for i in order}

    completeness = {
        g: {"done": int(np.sum(st == layout.STATUS_DONE)),
            "pending": int(np.sum(st == layout.STATUS_PENDING)),
            "failed": int(np.sum(st == layout.STATUS_FAILED))}
        for g, st in index.status.items()}
    prov_keys = ("emodist_version", "created", "dataset", "label_rule")
    return {
        "store": acc.url,
        "segments": int(index.n),
        "tracks": len(index.categories["track_id"]),
        "completeness": completeness,
        "complete": int(index.done().sum()),
        "failures": list(attrs.get("failures") or []),
        "classes": counts("label") if index.n else {},
        "genres": counts("genre") if index.n else {},
        "features": {var: len(cols) for var, cols in index.feature_names.items()},
        "spec": attrs.get("spec"),
        "feature_groups": attrs.get("feature_groups"),
        "provenance": {k: attrs[k] for k in prov_keys if k in attrs},
        "size_bytes": _size_on_disk(acc.url, acc.storage_options),
        "chunking": _chunking(ds),
    }
