"""One handle per store and run: the location, its filesystem, the Zarr store and the group.

A run resolves its store once, at its entry point (:func:`as_store`), and
passes the :class:`StoreHandle` down to every helper of :mod:`emodist.store`
and to the worker tasks, instead of a URL string that each helper resolves
again (the filesystem from the URL and the storage options, the Zarr store
object, the root group and its metadata).  The helpers still accept a URL
string (and storage options) and make a handle from it.

What is cached, and where:

- the filesystem, the path of the store's root in it and the Zarr store
  object: once per process and location (URL and storage options), in a small
  cache (:data:`CACHE_SIZE` locations), so that a worker process resolves a
  store once however many tasks it runs;
- the opened root group: once per process and handle (a handle made by one
  run is not reused by the next), until :meth:`StoreHandle.forget` after a
  change of the store's metadata.

A handle pickles as its URL, storage options, deadline and identity; what was
opened stays behind and is opened again, lazily, where it is unpickled.  Every
opening goes through :func:`emodist.store.faults.retrying` with the handle's
storage deadline.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
import warnings
from collections import OrderedDict

import fsspec.core

from emodist.store.faults import retrying, storage_deadline

__all__ = ["CACHE_SIZE", "StoreHandle", "as_store", "is_url"]

#: Locations (and opened groups) each process keeps open.
CACHE_SIZE = 16

_OPENED: OrderedDict = OrderedDict()  # (url, options, read_only) -> (fs, root, zarr store)
_GROUPS: OrderedDict = OrderedDict()  # (handle id, read_only) -> zarr.Group
_LOCK = threading.Lock()


def is_url(url) -> bool:
    """Whether ``url`` names a remote (non-local) location."""
    return "://" in str(url) and not str(url).startswith("file://")


def _remember(cache: OrderedDict, key, value):
    with _LOCK:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
    return value


def _cached(cache: OrderedDict, key, handle: StoreHandle, make, what: str):
    """``cache[key]``, made by ``make()`` (retried within the handle's deadline) when missing."""
    with _LOCK:
        value = cache.get(key)
        if value is not None:
            cache.move_to_end(key)
            return value
    return _remember(cache, key, handle.retry(make, what=what))


class StoreHandle:
    """A feature store's location, resolved once and passed down.

    Parameters
    ----------
    url : str or os.PathLike
        Local path or fsspec URL (``s3://bucket/prefix``).
    storage_options : dict, optional
        Filesystem options (credentials, endpoint); never written anywhere.
    read_only : bool
        Open the Zarr store read-only (readers).
    deadline : float, optional
        Seconds a transient storage error is retried
        (default :func:`emodist.store.faults.storage_deadline`).

    Notes
    -----
    ``str(handle)`` is the URL, so that messages name the store as the user
    gave it.  Handles compare equal when they name the same location with the
    same options.  Nothing opened is kept on the instance (the process's
    caches hold it), so a handle pickles as its location, options, deadline
    and identity.
    """

    def __init__(self, url, storage_options: dict | None = None, *, read_only: bool = False,
                 deadline: float | None = None):
        self.url = os.fspath(url) if isinstance(url, os.PathLike) else str(url)
        self.storage_options = dict(storage_options) if storage_options else None
        self.read_only = bool(read_only)
        self.deadline = storage_deadline() if deadline is None else float(deadline)
        self._id = uuid.uuid4().hex

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"StoreHandle({self.url!r}{', read_only=True' if self.read_only else ''})"

    def _key(self) -> tuple:
        return (self.url, json.dumps(self.storage_options or {}, sort_keys=True, default=repr))

    def __eq__(self, other) -> bool:
        return isinstance(other, StoreHandle) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    # --- what is resolved once per process ----------------------------------------------------
    @property
    def remote(self) -> bool:
        """Whether the store is not on a local disk."""
        return is_url(self.url)

    @property
    def local_path(self) -> str:
        """The local path of a store on a local disk (``file://`` removed)."""
        return self.url.removeprefix("file://")

    def _opened(self) -> tuple:
        return _cached(_OPENED, self._key() + (self.read_only,), self, self._open,
                       "opening the store")

    def _open(self) -> tuple:
        import zarr.storage  # here, not at the top: emodist predict FILE starts without zarr

        fs, root = fsspec.core.url_to_fs(self.url, **dict(self.storage_options or {}))
        if self.remote:
            target = zarr.storage.FsspecStore.from_url(
                self.url, storage_options=dict(self.storage_options or {}),
                read_only=self.read_only)
        else:
            target = zarr.storage.LocalStore(self.local_path, read_only=self.read_only)
        return fs, root.rstrip("/"), target

    @property
    def fs(self):
        """The fsspec filesystem of the store."""
        return self._opened()[0]

    @property
    def root(self) -> str:
        """The store's root path in :attr:`fs` (no trailing ``/``)."""
        return self._opened()[1]

    def path(self, *names: str) -> str:
        """The path of ``root/name/...`` in :attr:`fs`."""
        return "/".join((self.root, *names))

    @property
    def zarr_store(self):
        """The :mod:`zarr` store object (``LocalStore`` or ``FsspecStore``)."""
        return self._opened()[2]

    def group(self):
        """The store's root :class:`zarr.Group`, opened once (see :meth:`forget`).

        Raises
        ------
        zarr.errors.GroupNotFoundError
            No group at the location (callers turn it into their own line).
        """
        return _cached(_GROUPS, (self._id, self.read_only), self, self._open_group,
                       "opening the group")

    def _open_group(self):
        # asked first through the synchronous filesystem: Zarr asks for several keys at once,
        # and against an endpoint that fails it leaves requests behind that print tracebacks
        # when the interpreter exits
        if not self.fs.exists(self.path("zarr.json")):
            raise FileNotFoundError(f"{self.url}: no zarr.json")
        import zarr  # here, not at the top: emodist predict FILE starts without zarr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return zarr.open_group(self.zarr_store, mode="r" if self.read_only else "r+")

    def forget(self) -> None:
        """Drop the opened group (after this process changed the store's metadata)."""
        with _LOCK:
            _GROUPS.pop((self._id, True), None)
            _GROUPS.pop((self._id, False), None)

    def retry(self, call, *args, what: str = "", **kwargs):
        """``call(*args, **kwargs)`` under the handle's retry policy (:func:`retrying`)."""
        return retrying(call, *args, url=self.url, deadline=self.deadline, what=what, **kwargs)

    def reading(self) -> StoreHandle:
        """This handle read-only (a reader's view of the same store and run)."""
        if self.read_only:
            return self
        other = StoreHandle(self.url, self.storage_options, read_only=True,
                            deadline=self.deadline)
        other._id = self._id
        return other


def as_store(store, storage_options: dict | None = None, *, read_only: bool = False,
             deadline: float | None = None) -> StoreHandle:
    """The :class:`StoreHandle` of ``store``: itself when it is one, else a new handle.

    Parameters
    ----------
    store : str, os.PathLike or StoreHandle
        Store location or handle.
    storage_options : dict, optional
        Filesystem options of a location (ignored for a handle, which has its own).
    read_only : bool
        Open a new handle's Zarr store read-only.
    deadline : float, optional
        Retry deadline of a new handle.
    """
    if isinstance(store, StoreHandle):
        return store
    return StoreHandle(store, storage_options, read_only=read_only, deadline=deadline)
