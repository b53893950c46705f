"""Storage faults: what is worth retrying, for how long, and the one line otherwise.

Every read and write of a store goes through a :class:`emodist.store.handle.StoreHandle`,
whose filesystem calls are wrapped by :func:`retrying`: an error that may pass (a
connection refused or reset, a timeout, an endpoint that does not answer) is
retried with a bounded exponential backoff (:data:`FIRST_DELAY` doubling up to
:data:`MAX_DELAY`) until the storage deadline has passed
(:func:`storage_deadline`: ``--storage-deadline`` or ``$EMODIST_STORAGE_DEADLINE``,
default :data:`STORAGE_DEADLINE` seconds).  The deadline is counted from the
first failure of a store in this process and reset by its next success, so that
once a store has been unreachable for the whole deadline the next calls fail
after one attempt: a run whose object store is lost for good stops in about the
deadline, not in the deadline times the number of chunks.

:func:`storage_error` turns what remains (and what is not worth retrying: no
credentials, a full or read-only disk, a store deleted under the run) into a
:class:`~emodist.errors.StoreError` of one line that names the store and what
to do; :func:`storage_faults` does so for a block of code.

Each attempt is itself bounded by the filesystem's own timeouts and retries
(for S3, botocore's ``connect_timeout``, ``read_timeout`` and ``retries`` in
``config_kwargs`` of the storage options).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable

from emodist.errors import EmodistError, StoreError

__all__ = [
    "DEADLINE_ENV", "FIRST_DELAY", "MAX_DELAY", "STORAGE_DEADLINE", "retrying",
    "storage_deadline", "storage_error", "storage_faults", "transient",
]

log = logging.getLogger(__name__)

#: Seconds a store may stay unreachable before a run gives up on it.
STORAGE_DEADLINE = 60.0
#: Environment variable that sets the deadline (what ``--storage-deadline`` sets).
DEADLINE_ENV = "EMODIST_STORAGE_DEADLINE"
#: First pause between two attempts, in seconds; doubled after each.
FIRST_DELAY = 0.25
#: Longest pause between two attempts, in seconds.
MAX_DELAY = 8.0

#: Exception class names (anywhere in the class's MRO) of failures that may pass.
_TRANSIENT_NAMES = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
    "ConnectionClosedError", "ProxyConnectionError", "ConnectionError",
    "ClientConnectorError", "ClientConnectionError", "ServerDisconnectedError",
    "ClientPayloadError", "FSTimeoutError", "TimeoutError", "IncompleteRead",
})
_TRANSIENT_ERRNO = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
                              errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH,
                              errno.EAGAIN, errno.EPIPE})
_TRANSIENT_TEXT = ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                   "reduce your request rate")
_CREDENTIAL_NAMES = frozenset({"NoCredentialsError", "PartialCredentialsError",
                               "CredentialRetrievalError"})

#: Store location -> monotonic time of its first failure not yet followed by a success.
_FAILING: dict[str, float] = {}
_FAILING_LOCK = threading.Lock()


def storage_deadline() -> float:
    """The storage deadline in seconds: ``$EMODIST_STORAGE_DEADLINE`` or :data:`STORAGE_DEADLINE`.

    Raises
    ------
    EmodistError
        The variable is set to something that is not a number of seconds above 0.
    """
    text = os.environ.get(DEADLINE_ENV, "").strip()
    if not text:
        return STORAGE_DEADLINE
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise EmodistError(f"must be a number of seconds above 0, got {text!r} (from "
                           f"${DEADLINE_ENV})", param="storage_deadline")
    return value


def _names(exc: BaseException) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def _chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from or during (each once)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def transient(exc: BaseException) -> bool:
    """Whether a storage error may pass when the call is made again (see the module notes)."""
    for e in _chain(exc):
        if isinstance(e, EmodistError) or _names(e) & _CREDENTIAL_NAMES:
            return False
        if _names(e) & _TRANSIENT_NAMES:
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNO:
            return True
        if any(t in str(e) for t in _TRANSIENT_TEXT):
            return True
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def storage_error(exc: BaseException, url, *, deadline: float | None = None) -> StoreError | None:
    """The one-line :class:`~emodist.errors.StoreError` of a storage failure, or ``None``.

    Parameters
    ----------
    exc : BaseException
        What a filesystem or Zarr call raised.
    url : str or StoreHandle
        The store it was about (named in the line).
    deadline : float, optional
        Seconds it was retried for (named in the line of a transient error).

    Returns
    -------
    StoreError or None
        ``None`` when ``exc`` is not a storage failure this knows (a bug, an
        :class:`~emodist.errors.EmodistError` already).
    """
    if isinstance(exc, EmodistError):
        return None
    for e in _chain(exc):
        names = _names(e)
        if names & _CREDENTIAL_NAMES:
            return StoreError(f"{url}: no credentials for the object store ({type(e).__name__}); "
                              "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
                              "or give key and secret in --storage-options", param="store")
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return StoreError(f"{url}: no space left on the device; free some space and rerun "
                              "the same command to resume", param="store")
        if isinstance(e, OSError) and e.errno == errno.EDQUOT:
            return StoreError(f"{url}: disk quota exceeded; free some space and rerun the same "
                              "command to resume", param="store")
        if isinstance(e, OSError) and e.errno == errno.EROFS:
            return StoreError(f"{url}: the file system is read-only; write the store somewhere "
                              "else", param="store")
        if "GroupNotFoundError" in names:
            return StoreError(f"{url}: the store is gone (deleted while this run used it?); "
                              "rerun the same command to rebuild it", param="store")
    if transient(exc):
        e = next(e for e in _chain(exc) if e is not None)
        waited = "" if deadline is None else f" for {deadline:g} s"
        return StoreError(f"{url}: cannot reach the store{waited} ({type(e).__name__}: "
                          f"{_first_line(e)}); check the endpoint and the network, rerun the "
                          "same command to resume, or allow longer with --storage-deadline",
                          param="store")
    for e in _chain(exc):
        if isinstance(e, PermissionError) or (isinstance(e, OSError)
                                              and e.errno in (errno.EACCES, errno.EPERM)):
            return StoreError(f"{url}: access denied ({_first_line(e)})", param="store")
    return None


@contextlib.contextmanager
def storage_faults(url, *, deadline: float | None = None, known: tuple = ()):
    """Turn the storage failures of a block into one-line :class:`~emodist.errors.StoreError`.

    Errors that :func:`storage_error` does not know pass unchanged, and so do
    those whose class is named in ``known`` (the caller has a line of its own).
    """
    try:
        yield
    except Exception as exc:
        if type(exc).__name__ in known:
            raise
        err = storage_error(exc, url, deadline=deadline)
        if err is None:
            raise
        raise err from None


def retrying(call: Callable, *args, url, deadline: float, what: str = "", **kwargs):
    """``call(*args, **kwargs)``, retried with a bounded backoff while its error is transient.

    Parameters
    ----------
    call : callable
        The filesystem or Zarr call.
    url : str
        The store it is about: the deadline counts from this store's first
        failure in this process (see the module notes).
    deadline : float
        Seconds after the first failure when the last attempt starts.
    what : str
        What the call does, for the log.

    Raises
    ------
    Exception
        The last error, once the deadline has passed or when it is not transient.
    """
    key, delay = str(url), FIRST_DELAY
    while True:
        try:
            out = call(*args, **kwargs)
        except Exception as exc:
            if not transient(exc):
                raise
            now = time.monotonic()
            with _FAILING_LOCK:
                since = _FAILING.setdefault(key, now)
            left = since + deadline - now
            if left <= 0:
                raise
            pause = min(delay, left, MAX_DELAY)
            log.debug("%s: %s failed (%s: %s); retrying for up to %.0f s", key,
                      what or "a storage call", type(exc).__name__, _first_line(exc), left)
            time.sleep(pause)
            delay *= 2
            continue
        if key in _FAILING:
            with _FAILING_LOCK:
                _FAILING.pop(key, None)
        return out
